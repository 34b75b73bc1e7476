"""Hand-written templates for the bundled WildChat-format sample (see make_sample.py).

Every text here was written for this sample; none is taken from WildChat. Each persona is a kind
of user with a consistent style and consistent complaints, so that persona inference has something
to find: the topics they ask about, the flaws their feedback points at (``alt`` replies and
``alt_feedback``; "too long" feedback on padded replies) and the phrases they use.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

LABELS = (
    "new_request",
    "continuation",
    "reattempt_with_feedback",
    "reattempt_without_feedback",
    "clarification",
    "positive_feedback",
    "negative_feedback",
    "other",
)


_BLOCK_START = re.compile(r"^\s*([-*•]\s|\d+[.)]\s|[A-Z]\.\s|#|\||\$\$|>|~~|\*\*|```|[A-Z][a-z]+:)")


def _t(text: str) -> str:
    """Dedent a template and re-join the lines of wrapped prose paragraphs (not code, lists or
    short lines such as a letter's signature), so texts read like chat output."""
    out: list[str] = []
    in_code = False
    for line in textwrap.dedent(text).strip("\n").split("\n"):
        fence = line.lstrip().startswith("```")
        prev = out[-1] if out else ""
        joinable = (not in_code and not fence and line.strip() and len(prev.strip()) >= 60
                    and not prev.lstrip().startswith("```") and not _BLOCK_START.match(line))
        if joinable:
            out[-1] = prev.rstrip() + " " + line.strip()
        else:
            out.append(line)
        if fence:
            in_code = not in_code
    return "\n".join(out)


@dataclass(frozen=True, kw_only=True)
class Topic:
    """One thing a persona asks about, with every reply variant a follow-up may need."""

    requests: tuple[str, ...]  # phrasings of the opening request
    reply: str  # a good answer
    short: str = ""  # the bare answer (e.g. only the code); the fix for "too long" feedback
    alt: str = ""  # a flawed answer the persona's `alt_feedback` complains about
    alt_feedback: tuple[str, ...] = ()
    again: str = ""  # a different answer, for "try again"
    more: str = ""  # what comes next, for "continue"
    terms: tuple[tuple[str, str], ...] = ()  # (term used in `reply`, explanation) for clarifications
    redacted: bool = False  # the request carries PII that WildChat's anonymiser replaced


@dataclass(frozen=True, kw_only=True)
class PersonaSpec:
    """A kind of user: who they are, what they ask, and how they react."""

    key: str
    summary: str  # the persona a good persona model should infer
    language: str = "English"
    accept_language: str = "en-US,en;q=0.9"
    places: tuple[tuple[str, str], ...]  # (country, state) choices
    n_users: int = 4
    topics: tuple[Topic, ...]
    long_feedback: tuple[str, ...] = ()  # complaints about a padded reply
    filler: tuple[str, ...] = ()  # paragraphs that pad a reply into a long one
    weights: Mapping[str, float] = field(default_factory=dict)  # follow-up label weights
    phrases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # per-label user phrases


def _weights(**overrides: float) -> Mapping[str, float]:
    base = {
        "new_request": 1.0, "continuation": 0.6, "reattempt_with_feedback": 1.4,
        "reattempt_without_feedback": 0.6, "clarification": 0.7, "positive_feedback": 1.0,
        "negative_feedback": 0.6, "other": 0.4,
    }
    base.update(overrides)
    return MappingProxyType(base)


# --------------------------------------------------------------------------------------------
# Generic phrases, per language
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Phrases:
    """Follow-up messages and stock assistant answers in one language."""

    positive: tuple[str, ...]
    negative: tuple[str, ...]
    again: tuple[str, ...]
    more: tuple[str, ...]
    clarify: tuple[str, ...]  # templates with {term}
    other: tuple[tuple[str, str], ...]  # (user message, assistant answer)
    next_prefix: tuple[str, ...]  # put before a new request in an ongoing conversation
    thanks_reply: tuple[str, ...]
    sorry_prefix: tuple[str, ...]
    sorry_ask: str  # apology that asks what is wrong, when there is no other answer to give
    again_prefix: tuple[str, ...]
    fix_prefix: tuple[str, ...]
    clarify_prefix: tuple[str, ...]
    long_intro: tuple[str, ...]
    long_outro: tuple[str, ...]


PHRASES: Mapping[str, Phrases] = MappingProxyType({
    "English": Phrases(
        positive=("thanks, perfect", "great, that works!", "awesome, thank you so much",
                  "this is exactly what I needed", "nice, thanks!", "perfect 👍",
                  "that worked, you're a lifesaver", "love it, thanks"),
        negative=("that's wrong", "no, that's not right", "this is incorrect", "that doesn't work",
                  "nope, wrong", "this is useless", "hmm, I don't think that's correct"),
        again=("try again", "again", "regenerate", "another one", "can you try once more?", "redo it",
               "one more time please"),
        more=("continue", "go on", "keep going", "please continue", "and then?", "more"),
        clarify=("what do you mean by {term}?", "what is {term}?", "sorry, what's {term}?",
                 "can you explain {term}?", "I don't get the part about {term}"),
        other=(("lol", "Glad that made you smile! Anything else I can help with?"),
               ("are you chatgpt?", "I'm an AI assistant built on a large language model. How can I help?"),
               ("what model are you?", "I'm a large language model assistant. Is there something I can help you with?"),
               ("who created you?", "I was created by OpenAI. What would you like to work on?"),
               ("hello?", "Hi! I'm here. What can I do for you?"),
               ("brb", "Sure, take your time. I'll be here when you get back."),
               ("what's the date today?", "I don't have access to real-time information, so I can't tell you today's date. Your device's clock will have it.")),
        next_prefix=("", "", "ok, another question: ", "next one: ", "now something different. ",
                     "different topic: "),
        thanks_reply=("You're welcome! Let me know if you need anything else.",
                      "Glad it helped! Feel free to ask if you have more questions.",
                      "Happy to help!", "Great to hear that! Good luck."),
        sorry_ask=("I'm sorry the answer didn't work for you. Could you tell me what is wrong or what you "
                   "expected, so I can correct it?"),
        sorry_prefix=("I apologize for the mistake. Here is a corrected version:\n\n",
                      "You're right, I'm sorry about that. Let me fix it:\n\n",
                      "Sorry for the confusion. Here's a better answer:\n\n"),
        again_prefix=("Sure, here's another version:\n\n", "Of course! Here's a different take:\n\n",
                      "Here's another attempt:\n\n"),
        fix_prefix=("Got it. ", "Sure! ", "Of course. ", "Understood. ", ""),
        clarify_prefix=("Good question! ", "Sure. ", "Of course. ", ""),
        long_intro=("Great question! Let me walk you through this step by step, covering the main "
                    "points as well as some details that are easy to miss.",
                    "Certainly! Below is a detailed answer. I'll start with the solution and then go "
                    "through the reasoning behind it, some alternatives, and a few practical tips.",
                    "Absolutely, I'd be happy to help with that. This is a common question, so let me "
                    "give you a thorough explanation."),
        long_outro=("I hope this helps! Let me know if you have any other questions or if you'd like "
                    "me to go deeper into any of these points.",
                    "Feel free to ask if anything is unclear. I'm happy to expand on any part of this "
                    "explanation or provide additional examples.",
                    "In summary, the approach above should cover most situations. If your case is "
                    "different, share more details and I can adapt the answer."),
    ),
    "French": Phrases(
        positive=("merci, c'est parfait", "super, merci beaucoup !", "génial, c'est exactement ça",
                  "top, merci"),
        negative=("c'est faux", "non, ce n'est pas correct", "ça ne marche pas"),
        again=("réessaie", "encore une fois", "une autre version stp"),
        more=("continue", "la suite ?", "continue stp"),
        clarify=("c'est quoi {term} ?", "que veux-tu dire par {term} ?", "peux-tu expliquer {term} ?"),
        other=(("mdr", "Content que ça vous amuse ! Autre chose ?"),
               ("tu es chatgpt ?", "Je suis un assistant basé sur un grand modèle de langage. Comment puis-je vous aider ?")),
        next_prefix=("", "autre question : ", "maintenant, "),
        thanks_reply=("Avec plaisir ! N'hésitez pas si vous avez d'autres questions.",
                      "Ravi d'avoir pu vous aider !"),
        sorry_ask="Désolé que la réponse ne vous convienne pas. Pouvez-vous me dire ce qui ne va pas ?",
        sorry_prefix=("Toutes mes excuses pour l'erreur. Voici une version corrigée :\n\n",
                      "Vous avez raison, désolé. Je corrige :\n\n"),
        again_prefix=("Bien sûr, voici une autre version :\n\n",),
        fix_prefix=("D'accord. ", "Bien sûr ! ", ""),
        clarify_prefix=("Bonne question ! ", ""),
        long_intro=("Excellente question ! Je vais vous répondre en détail, étape par étape.",),
        long_outro=("J'espère que cela vous aide ! N'hésitez pas à me demander des précisions.",),
    ),
    "Spanish": Phrases(
        positive=("gracias, perfecto", "genial, muchas gracias!", "justo lo que necesitaba"),
        negative=("eso está mal", "no, no es correcto", "no funciona"),
        again=("otra vez", "inténtalo de nuevo", "dame otra versión"),
        more=("continúa", "sigue", "¿y después?"),
        clarify=("¿qué es {term}?", "¿qué significa {term}?", "no entiendo lo de {term}"),
        other=(("jaja", "¡Me alegra que te haga gracia! ¿Algo más?"),
               ("¿eres chatgpt?", "Soy un asistente basado en un modelo de lenguaje. ¿En qué te puedo ayudar?")),
        next_prefix=("", "otra pregunta: ", "ahora, "),
        thanks_reply=("¡De nada! Si necesitas algo más, aquí estoy.", "¡Me alegra haberte ayudado!"),
        sorry_ask="Siento que la respuesta no te sirva. ¿Me dices qué está mal para corregirlo?",
        sorry_prefix=("Disculpa el error. Aquí tienes una versión corregida:\n\n",
                      "Tienes razón, lo siento. Lo corrijo:\n\n"),
        again_prefix=("Claro, aquí tienes otra versión:\n\n",),
        fix_prefix=("Entendido. ", "¡Claro! ", ""),
        clarify_prefix=("¡Buena pregunta! ", ""),
        long_intro=("¡Claro que sí! Te lo explico con todo detalle, paso a paso.",),
        long_outro=("¡Espero que te sirva! Si tienes más preguntas, no dudes en escribirme.",),
    ),
    "Chinese": Phrases(
        positive=("谢谢，完美", "太好了，谢谢！", "正是我需要的"),
        negative=("这是错的", "不对", "运行不了"),
        again=("再来一次", "重新生成", "换一个"),
        more=("继续", "继续写", "然后呢？"),
        clarify=("{term}是什么意思？", "什么是{term}？", "能解释一下{term}吗？"),
        other=(("哈哈", "很高兴你觉得有趣！还有什么可以帮你的吗？"),
               ("你是chatgpt吗？", "我是一个基于大型语言模型的AI助手。有什么可以帮你的？")),
        next_prefix=("", "另一个问题：", "还有，"),
        thanks_reply=("不客气！有问题随时问我。", "很高兴能帮到你！"),
        sorry_ask="抱歉，能告诉我哪里不对吗？我来修改。",
        sorry_prefix=("抱歉，之前的回答有误。下面是修改后的版本：\n\n",),
        again_prefix=("好的，这是另一个版本：\n\n",),
        fix_prefix=("好的。", "没问题！", ""),
        clarify_prefix=("好问题！", ""),
        long_intro=("好的！下面我一步一步详细解释。",),
        long_outro=("希望对你有帮助！如果还有问题，欢迎继续提问。",),
    ),
})


# --------------------------------------------------------------------------------------------
# Personas
# --------------------------------------------------------------------------------------------

PYTHON_DEV = PersonaSpec(
    key="python_dev",
    summary="Backend Python developer who wants terse, idiomatic, type-hinted Python code and no "
            "explanations; gets annoyed by long answers and by code in other languages.",
    places=(("United States", "California"), ("Germany", "Berlin"), ("India", "Karnataka"),
            ("United Kingdom", "England"), ("Canada", "Ontario")),
    long_feedback=("too long, give me just the code", "tl;dr. code only please",
                   "I don't need an essay, just the function", "way too verbose. code only, no comments",
                   "skip the explanation, just the code"),
    weights=_weights(reattempt_with_feedback=2.2, positive_feedback=0.8, continuation=0.2),
    phrases={"positive_feedback": ("perfect, thx", "works, thanks", "nice", "👍 works")},
    filler=(
        "**Edge cases.** Think about what should happen with empty input, with `None` values and with "
        "very large inputs. In production code it is usually a good idea to validate arguments early "
        "and raise a clear `ValueError` instead of failing deep inside the loop with a cryptic message.",
        "**Testing.** I'd recommend writing a few unit tests with `pytest` to make sure the function "
        "behaves as expected. Parametrized tests (`@pytest.mark.parametrize`) are a convenient way to "
        "cover many inputs at once, including the edge cases mentioned above.",
        "**Performance.** For most inputs this runs in linear time. If you need to process millions of "
        "items, measure first with `timeit` or `cProfile` before optimising; the bottleneck is often I/O "
        "rather than the Python code itself.",
        "**Type hints.** The annotations make the function easier to use from an IDE and let tools "
        "like `mypy` catch mistakes before runtime. They have no effect on performance.",
        "**Style.** The code follows PEP 8. You can run `black` or `ruff format` to keep the formatting "
        "consistent across your project, and `ruff check` to catch common mistakes.",
        "**Alternatives.** Depending on your use case, a third-party library may already solve this "
        "problem, but for something this small a few lines of standard-library Python are usually "
        "easier to maintain than an extra dependency.",
    ),
    topics=(
        Topic(
            requests=("python: remove duplicates from a list but keep the order",
                      "dedupe a list in python preserving order",
                      "fastest way to drop duplicates from a list, keep first occurrence, python"),
            reply=_t('''
                Use a dict, which keeps insertion order:

                ```python
                def dedupe(items: list[T]) -> list[T]:
                    return list(dict.fromkeys(items))
                ```

                This is O(n) and keeps the first occurrence of each element. Items must be hashable.'''),
            short=_t('''
                ```python
                def dedupe(items: list[T]) -> list[T]:
                    return list(dict.fromkeys(items))
                ```'''),
            alt=_t('''
                Here is how you can do it:

                ```java
                public static <T> List<T> dedupe(List<T> items) {
                    return new ArrayList<>(new LinkedHashSet<>(items));
                }
                ```

                `LinkedHashSet` keeps insertion order while removing duplicates.'''),
            alt_feedback=("I asked for Python, not Java", "why java?? python please",
                          "that's Java. I need python"),
            again=_t('''
                ```python
                def dedupe(items: Iterable[T]) -> list[T]:
                    seen: set[T] = set()
                    return [x for x in items if not (x in seen or seen.add(x))]
                ```'''),
            terms=(("hashable", "An object is hashable if it has a hash value that never changes "
                    "during its lifetime (`__hash__`) and can be compared with `__eq__`. Ints, strings "
                    "and tuples of hashables are hashable; lists and dicts are not, so they can't be "
                    "dict keys or set members."),),
        ),
        Topic(
            requests=("python function to retry a call with exponential backoff",
                      "write a retry decorator in python, exponential backoff, max 5 attempts"),
            reply=_t('''
                ```python
                import functools
                import random
                import time

                def retry(attempts: int = 5, base: float = 0.5, exceptions=(Exception,)):
                    def deco(fn):
                        @functools.wraps(fn)
                        def wrapper(*args, **kwargs):
                            for i in range(attempts):
                                try:
                                    return fn(*args, **kwargs)
                                except exceptions:
                                    if i == attempts - 1:
                                        raise
                                    time.sleep(base * 2 ** i + random.uniform(0, base))
                        return wrapper
                    return deco
                ```

                The delay doubles after each failure, with a little random jitter so that many clients
                don't retry at the same moment.'''),
            short=_t('''
                ```python
                def retry(attempts: int = 5, base: float = 0.5, exceptions=(Exception,)):
                    def deco(fn):
                        @functools.wraps(fn)
                        def wrapper(*args, **kwargs):
                            for i in range(attempts):
                                try:
                                    return fn(*args, **kwargs)
                                except exceptions:
                                    if i == attempts - 1:
                                        raise
                                    time.sleep(base * 2 ** i + random.uniform(0, base))
                        return wrapper
                    return deco
                ```'''),
            alt=_t('''
                ```javascript
                async function retry(fn, attempts = 5, base = 500) {
                  for (let i = 0; i < attempts; i++) {
                    try { return await fn(); }
                    catch (e) {
                      if (i === attempts - 1) throw e;
                      await new Promise(r => setTimeout(r, base * 2 ** i));
                    }
                  }
                }
                ```'''),
            alt_feedback=("python, not javascript", "I said python. why is this JS"),
            terms=(("jitter", "Jitter is a small random amount added to each delay. Without it, "
                    "clients that failed at the same time retry at the same time and overload the "
                    "server again (the 'thundering herd')."),
                   ("functools.wraps", "`functools.wraps` copies the wrapped function's name, "
                    "docstring and signature metadata onto the wrapper, so logs, tracebacks and "
                    "`help()` still show the original function.")),
        ),
        Topic(
            requests=("read a 10GB csv in python and sum the 'amount' column without loading it all",
                      "python: sum one column of a huge csv, memory efficient"),
            reply=_t('''
                Stream it with the `csv` module:

                ```python
                import csv
                from decimal import Decimal

                def sum_column(path: str, column: str = "amount") -> Decimal:
                    total = Decimal(0)
                    with open(path, newline="") as fh:
                        for row in csv.DictReader(fh):
                            total += Decimal(row[column] or 0)
                    return total
                ```

                Memory stays constant because rows are read one at a time. With pandas you can do the
                same using `pd.read_csv(path, usecols=[column], chunksize=1_000_000)`.'''),
            alt=_t('''
                ```java
                try (BufferedReader r = Files.newBufferedReader(Path.of(path))) {
                    String[] header = r.readLine().split(",");
                    int col = Arrays.asList(header).indexOf("amount");
                    BigDecimal total = r.lines().map(l -> new BigDecimal(l.split(",")[col]))
                                        .reduce(BigDecimal.ZERO, BigDecimal::add);
                }
                ```'''),
            alt_feedback=("I asked for Python, not Java", "this is java, I need python"),
            short=_t('''
                ```python
                def sum_column(path: str, column: str = "amount") -> Decimal:
                    total = Decimal(0)
                    with open(path, newline="") as fh:
                        for row in csv.DictReader(fh):
                            total += Decimal(row[column] or 0)
                    return total
                ```'''),
            again=_t('''
                ```python
                import pandas as pd

                def sum_column(path: str, column: str = "amount") -> float:
                    chunks = pd.read_csv(path, usecols=[column], chunksize=1_000_000)
                    return sum(chunk[column].sum() for chunk in chunks)
                ```'''),
            terms=(("chunksize", "With `chunksize`, `read_csv` returns an iterator of DataFrames of at "
                    "most that many rows instead of one big DataFrame, so only one chunk is in memory "
                    "at a time."),
                   ("Decimal", "`decimal.Decimal` does exact base-10 arithmetic, so money amounts like "
                    "0.1 + 0.2 add up exactly instead of accumulating float rounding errors.")),
        ),
        Topic(
            requests=("flatten a nested dict into dotted keys, python",
                      "python func: {'a': {'b': 1}} -> {'a.b': 1}"),
            reply=_t('''
                ```python
                def flatten(d: dict, prefix: str = "", sep: str = ".") -> dict:
                    out = {}
                    for key, value in d.items():
                        name = f"{prefix}{sep}{key}" if prefix else str(key)
                        if isinstance(value, dict) and value:
                            out.update(flatten(value, name, sep))
                        else:
                            out[name] = value
                    return out
                ```

                Empty nested dicts are kept as values so no key disappears.'''),
            short=_t('''
                ```python
                def flatten(d: dict, prefix: str = "", sep: str = ".") -> dict:
                    out = {}
                    for key, value in d.items():
                        name = f"{prefix}{sep}{key}" if prefix else str(key)
                        if isinstance(value, dict) and value:
                            out.update(flatten(value, name, sep))
                        else:
                            out[name] = value
                    return out
                ```'''),
            alt=_t('''
                ```go
                func Flatten(m map[string]any, prefix string, out map[string]any) {
                    for k, v := range m {
                        key := k
                        if prefix != "" { key = prefix + "." + k }
                        if sub, ok := v.(map[string]any); ok { Flatten(sub, key, out) } else { out[key] = v }
                    }
                }
                ```'''),
            alt_feedback=("wrong language, I need python", "go? I asked for python"),
            more=_t('''
                And the inverse, to rebuild the nested dict:

                ```python
                def unflatten(d: dict, sep: str = ".") -> dict:
                    out: dict = {}
                    for key, value in d.items():
                        node = out
                        *parents, last = key.split(sep)
                        for part in parents:
                            node = node.setdefault(part, {})
                        node[last] = value
                    return out
                ```'''),
        ),
        Topic(
            requests=("fetch 500 urls concurrently in python with max 20 at a time",
                      "asyncio + aiohttp, download many urls with a concurrency limit"),
            reply=_t('''
                ```python
                import asyncio
                import aiohttp

                async def fetch_all(urls: list[str], limit: int = 20) -> list[str]:
                    sem = asyncio.Semaphore(limit)
                    async with aiohttp.ClientSession() as session:
                        async def fetch(url: str) -> str:
                            async with sem, session.get(url) as resp:
                                resp.raise_for_status()
                                return await resp.text()
                        return await asyncio.gather(*(fetch(u) for u in urls))
                ```

                The semaphore caps the number of requests in flight at `limit`.'''),
            short=_t('''
                ```python
                async def fetch_all(urls: list[str], limit: int = 20) -> list[str]:
                    sem = asyncio.Semaphore(limit)
                    async with aiohttp.ClientSession() as session:
                        async def fetch(url: str) -> str:
                            async with sem, session.get(url) as resp:
                                resp.raise_for_status()
                                return await resp.text()
                        return await asyncio.gather(*(fetch(u) for u in urls))
                ```'''),
            terms=(("semaphore", "A semaphore is a counter that lets at most N tasks into a block at "
                    "once. `async with sem:` waits until a slot is free, so no more than `limit` "
                    "downloads run at the same time."),
                   ("asyncio.gather", "`asyncio.gather` runs the coroutines concurrently and returns "
                    "their results in the same order as the inputs. By default the first exception "
                    "is raised; pass `return_exceptions=True` to get exceptions as results instead.")),
            again=_t('''
                ```python
                async def fetch_all(urls: list[str], limit: int = 20) -> list[str]:
                    connector = aiohttp.TCPConnector(limit=limit)
                    async with aiohttp.ClientSession(connector=connector) as session:
                        async def fetch(url: str) -> str:
                            async with session.get(url) as resp:
                                return await resp.text()
                        return await asyncio.gather(*map(fetch, urls))
                ```'''),
        ),
        Topic(
            requests=("split an iterable into batches of n in python",
                      "python chunk a generator into lists of size n"),
            reply=_t('''
                ```python
                from itertools import islice
                from typing import Iterable, Iterator

                def batched(it: Iterable[T], n: int) -> Iterator[list[T]]:
                    it = iter(it)
                    while batch := list(islice(it, n)):
                        yield batch
                ```

                On Python 3.12+ you can use `itertools.batched(it, n)` directly (it yields tuples).'''),
            alt=_t('''
                ```java
                static <T> List<List<T>> batched(List<T> items, int n) {
                    List<List<T>> out = new ArrayList<>();
                    for (int i = 0; i < items.size(); i += n) {
                        out.add(items.subList(i, Math.min(i + n, items.size())));
                    }
                    return out;
                }
                ```'''),
            alt_feedback=("I asked for Python, not Java", "java again? PYTHON"),
            short=_t('''
                ```python
                def batched(it: Iterable[T], n: int) -> Iterator[list[T]]:
                    it = iter(it)
                    while batch := list(islice(it, n)):
                        yield batch
                ```'''),
            terms=(("islice", "`itertools.islice(it, n)` takes the next n items from an iterator "
                    "without materialising the rest, so this works on generators and infinite "
                    "streams."),
                   (":=", "`:=` (the 'walrus operator') assigns and returns a value inside an expression. Here "
                    "it stores the batch and ends the loop when the batch is empty.")),
        ),
    ),
)

STUDENT = PersonaSpec(
    key="student_simple",
    summary="High-school student who wants short, simple explanations with everyday analogies; "
            "gets lost with jargon and long texts and asks what words mean.",
    places=(("United States", "Texas"), ("United States", "Ohio"), ("Australia", "Victoria"),
            ("Philippines", "Metro Manila"), ("United Kingdom", "Scotland")),
    long_feedback=("that's too much text, can you make it shorter?", "can you summarize this in 3 sentences?",
                   "too long i have a test tomorrow just give me the main idea"),
    weights=_weights(clarification=1.6, reattempt_with_feedback=1.8, continuation=0.3),
    phrases={"positive_feedback": ("omg thank you, now i get it", "thanks!! that makes sense",
                                   "ok that's actually easy, thanks")},
    filler=(
        "To understand this fully, it helps to look at the history of the idea. Scientists argued about "
        "it for a long time, and several experiments were needed before the explanation we use today "
        "was accepted by the scientific community.",
        "There are also several important exceptions and special cases. In more advanced courses you "
        "will learn that the simple picture is an approximation, and that the full description requires "
        "more mathematics, including calculus and statistics.",
        "It is worth noting that this topic is connected to many other areas of science, such as "
        "chemistry, physics and biology. Understanding these connections will help you see the bigger "
        "picture and remember the details more easily for your exams.",
        "A common misconception is that the process happens instantly or in a single step. In reality "
        "it involves many intermediate stages, each of which is studied in detail by researchers.",
        "If you want to go further, good resources include your textbook's chapter summary, Khan Academy "
        "videos and practice questions from past exams, which often test exactly these ideas.",
    ),
    topics=(
        Topic(
            requests=("explain photosynthesis simply", "what is photosynthesis? explain like im 12",
                      "can u explain photosynthesis for my biology homework"),
            reply=_t('''
                Photosynthesis is how plants make their own food. 🌱

                - Plants take in **sunlight**, **water** (through their roots) and **carbon dioxide** (from the air).
                - Inside the leaves, a green substance called **chlorophyll** captures the sunlight.
                - The plant uses that energy to turn water and carbon dioxide into **sugar** (its food).
                - **Oxygen** is released as a "leftover" — that's the oxygen we breathe!

                Think of a leaf as a tiny solar-powered kitchen that cooks sugar from air and water.'''),
            short="Plants use sunlight to turn water and carbon dioxide into sugar (their food), and they "
                  "release oxygen. The green chlorophyll in leaves catches the sunlight.",
            alt=_t('''
                Photosynthesis comprises the light-dependent reactions, in which photosystems II and I
                drive linear electron flow through the cytochrome b6f complex to generate ATP and NADPH via
                chemiosmosis, and the Calvin–Benson cycle, in which RuBisCO catalyses the carboxylation of
                ribulose-1,5-bisphosphate, yielding 3-phosphoglycerate that is reduced to
                glyceraldehyde-3-phosphate.'''),
            alt_feedback=("I don't understand any of that, can you explain it like I'm 12?",
                          "too complicated, simpler please", "what?? i'm in 9th grade, explain it simply"),
            terms=(("chlorophyll", "Chlorophyll is the green stuff in leaves. It's like a solar panel: "
                    "it soaks up sunlight so the plant can use the energy. It's also why leaves look green!"),),
            more="Fun fact: almost all the oxygen in the air came from photosynthesis, by plants and tiny "
                 "ocean organisms called phytoplankton. Without it, animals (and us) couldn't breathe. Also, "
                 "at night plants stop photosynthesis because there's no light, but they keep breathing.",
        ),
        Topic(
            requests=("why is the sky blue", "why is the sky blue?? simple answer pls"),
            reply=_t('''
                Sunlight looks white, but it's actually a mix of all colours. When sunlight enters the air,
                it bumps into tiny gas molecules. Blue light has short, choppy waves, so it gets **bounced
                around (scattered)** much more than red or yellow light. That scattered blue light comes at
                us from every direction in the sky — so the sky looks blue!

                Scientists call this **Rayleigh scattering**.'''),
            short="Sunlight is a mix of colours. Blue light gets scattered around by the air much more than "
                  "other colours, so blue reaches our eyes from all over the sky.",
            alt="The blue colour of the sky results from the inverse fourth-power wavelength dependence of "
                "the Rayleigh scattering cross-section for electromagnetic radiation interacting with "
                "particles much smaller than the wavelength, primarily N2 and O2 molecules.",
            alt_feedback=("i dont get it. explain like im a kid", "simpler pls, no big words"),
            terms=(("Rayleigh scattering", "Rayleigh scattering is just the name for light bouncing off "
                    "things much smaller than the light wave, like air molecules. It bounces blue light "
                    "way more than red light."),),
            more="That's also why sunsets are orange and red! When the sun is low, its light travels through "
                 "much more air to reach you. Most of the blue gets scattered away before it arrives, so "
                 "the reds and oranges are what's left.",
        ),
        Topic(
            requests=("what is an atom", "explain atoms to me simply"),
            reply=_t('''
                An atom is the tiniest building block of everything — you, your desk, the air.

                It has a small center called the **nucleus**, made of **protons** (positive) and
                **neutrons** (no charge). Around it, tiny **electrons** (negative) zoom around like bees
                around a hive. The number of protons decides what element it is: 1 proton = hydrogen,
                6 = carbon, 8 = oxygen.'''),
            short="An atom is the smallest building block of matter: a nucleus of protons and neutrons with "
                  "electrons moving around it. The number of protons tells you which element it is.",
            alt="Atoms are described by quantum mechanics: electrons occupy orbitals given by solutions of "
                "the Schrödinger equation, characterised by the quantum numbers n, l, m_l and m_s, and "
                "the nucleus is bound by the residual strong interaction.",
            alt_feedback=("that's way too complicated for me", "can you explain it simpler, I'm in 8th grade"),
            terms=(("electron", "Electrons are super tiny particles with a negative charge. They move "
                    "around the nucleus. When electrons flow through a wire, that's electricity!"),
                   ("nucleus", "The nucleus is the center of the atom. It's tiny but holds almost all of "
                    "the atom's weight.")),
            more="Atoms can also stick together to make molecules. For example, two hydrogen atoms and one "
                 "oxygen atom join to make a water molecule, H₂O.",
        ),
        Topic(
            requests=("how do vaccines work", "how does a vaccine work? simple explanation"),
            reply=_t('''
                A vaccine is like a training session for your immune system. 🛡️

                It shows your body a harmless piece or a weakened version of a germ. Your immune system
                learns what it looks like and makes **antibodies** against it. Later, if the real germ shows
                up, your body recognises it right away and fights it off before you get really sick.'''),
            short="A vaccine shows your immune system a harmless version of a germ, so it learns to recognise "
                  "and fight the real germ quickly later.",
            terms=(("antibodies", "Antibodies are Y-shaped proteins your body makes. They stick to germs "
                    "like name tags so your immune cells can find and destroy them."),),
            more="That's also why some vaccines need a booster shot: it reminds your immune system, like "
                 "reviewing your notes before a test so you don't forget.",
        ),
        Topic(
            requests=("what is inflation in economics", "explain inflation simply pls"),
            reply=_t('''
                Inflation means prices go up over time, so the same money buys less.

                Example: if a candy bar cost $1 last year and $1.10 now, prices rose 10%. Your $10 used to
                buy 10 candy bars and now buys only 9. Inflation often happens when people want to buy more
                stuff than there is, or when making things gets more expensive.'''),
            short="Inflation is when prices rise over time, so each dollar buys less than before.",
            alt="Inflation is a sustained increase in the general price level, typically measured by the "
                "CPI; under the quantity theory, MV = PY implies that monetary expansion exceeding real "
                "output growth raises P, mediated by expectations-augmented Phillips curve dynamics.",
            alt_feedback=("what does any of that mean lol. simpler", "i don't understand, use an example"),
            terms=(("prices rose 10%", "It means the new price is the old price plus 10% of it: $1 + $0.10 = $1.10."),),
        ),
    ),
)

NOVELIST = PersonaSpec(
    key="novelist",
    summary="Fantasy novelist drafting a dark, atmospheric book; wants vivid sensory prose in the "
            "past tense, asks to continue scenes, dislikes cheerful or bland writing.",
    places=(("United States", "Oregon"), ("Ireland", "Leinster"), ("United Kingdom", "Wales"),
            ("New Zealand", "Otago")),
    long_feedback=("too long, I need one tight paragraph", "cut it down, half the length please"),
    weights=_weights(continuation=2.2, reattempt_without_feedback=1.2, clarification=0.2,
                     reattempt_with_feedback=1.6),
    phrases={"continuation": ("continue", "keep going", "what happens next?", "continue the scene",
                              "go on, same tone")},
    filler=(
        "The air carried the smell of salt and tar and something older beneath it, a sweetness like "
        "fruit left too long in the sun. Somewhere a bell tolled, slow and uneven, as if the hand that "
        "rang it had grown tired of counting the dead.",
        "She remembered her mother's warnings then, whispered over the hearth on winter nights: never "
        "answer a voice that calls your name from the water, never follow a light that does not flicker, "
        "never trust a door that opens before you knock.",
        "Every stone of the old wall had been laid by hands long turned to dust, and every one of them "
        "seemed to lean inward, listening. The moss between them glistened black in the half-light.",
        "Far below, the river muttered to itself in a language older than the city, carrying leaves, "
        "ash and the occasional pale thing that no one ever looked at too closely.",
    ),
    topics=(
        Topic(
            requests=("Write the opening scene of my fantasy novel: a fog-bound port city at night, my "
                      "heroine Maren arrives by smuggler's boat.",
                      "opening paragraph for my novel. port city, fog, night. Maren (smuggler, 20s) arrives"),
            reply=_t('''
                The fog came in before the boat did. It rolled over the black water of Vesk harbour like
                something alive, swallowing the lanterns one by one until only the lighthouse remained, a
                smear of sick yellow high above the docks.

                Maren crouched in the bow with her knife unsheathed beneath her cloak. The oarsman had not
                spoken since they left the reef, and she did not trust a man who could keep that quiet. Wet
                rope creaked. Somewhere ahead a chain dragged across stone.

                When the hull kissed the pier, she was already moving — up the slick ladder, into the
                maze of crates, into the city that had hanged her father.'''),
            alt=_t('''
                Maren arrived at the bustling port city of Vesk on a foggy evening. She was excited to begin
                her new adventure! The harbour was full of friendly sailors and colourful boats, and the
                smell of fresh bread drifted from a nearby bakery. She smiled and stepped onto the dock,
                ready for whatever the future might bring.'''),
            alt_feedback=("way too cheerful. make it darker and more menacing",
                          "this reads like a kids' book. more sensory detail, less telling",
                          "no no, she's a smuggler returning to the city that killed her father. darker"),
            again=_t('''
                Vesk did not welcome ships after dark; it swallowed them. Maren learned this the moment the
                fog closed behind the smuggler's boat and the stars went out like snuffed candles.

                She tasted brine and coal smoke. She heard the harbour before she saw it — the groan of
                moored hulls, the drip of water from rotten pilings, a dog barking once and then, abruptly,
                not at all. Her hand found the hilt at her hip and stayed there.'''),
            more=_t('''
                The alley behind the customs house stank of fish guts and lamp oil. Maren pressed herself
                into a doorway as a patrol passed, their boots ringing on the cobbles, their halberds
                wrapped in oilcloth against the damp.

                When the sound faded she counted to thirty, the way her father had taught her, and slipped
                out. The tavern sign still hung where she remembered it — a drowned man painted in peeling
                blue — but someone had nailed a new board beneath it. Three words, burned into the wood:
                *We remember Orrin.*

                Her father's name. She had not heard it spoken aloud in six years.'''),
            terms=(("halberds", "A halberd is a pole weapon: a long shaft topped with an axe blade, a "
                    "spike and often a hook. City watchmen in late-medieval Europe commonly carried them."),),
        ),
        Topic(
            requests=("write a villain monologue for Lord Caddoc, a soft-spoken necromancer, speaking to "
                      "the captured heroine",
                      "monologue: my villain Caddoc (quiet, polite, terrifying necromancer) talks to Maren in chains"),
            reply=_t('''
                "You think me cruel." Caddoc set down the teacup without a sound. "Cruelty is the province
                of the impatient, Maren. I am merely thorough."

                He walked the length of the cell, trailing a pale finger along the damp stone. "Your father
                believed the dead should rest. A charming sentiment. But the dead do not *rest*, my dear.
                They wait. They wait in the ground, in the river, in the walls of this very city — and they
                are so very tired of waiting."

                He crouched before her, close enough that she could smell the lavender on his breath and,
                beneath it, the grave. "I am simply the only one who listens."'''),
            alt=_t('''
                "Ha ha ha! You will never defeat me, Maren!" shouted Caddoc. "I am the most powerful
                necromancer in the land and soon I will rule the world with my army of skeletons! Nobody
                can stop me now! Mwahaha!"'''),
            alt_feedback=("too cartoonish. he's quiet and polite, that's what makes him scary",
                          "cringe. make him subtle and unsettling, no mwahaha"),
            again=_t('''
                Caddoc did not raise his voice. He never had to.

                "Do you know what the dead ask for, when they first wake?" he said, turning the page of a
                book she could not see. "Not vengeance. Not justice. They ask for their mothers." He smiled,
                gently, as a physician smiles. "I find that I cannot refuse them. Can you?"'''),
            more=_t('''
                Maren spat at his feet. Caddoc regarded the spittle with mild interest, as though it were a
                curious beetle.

                "Your father did that too," he said. "Right before the end." He rose, brushing the dust from
                his knees, and rapped twice on the door. It opened at once; no one had been standing behind
                it. "Think on my offer. I will return when the bells have rung three."

                The door closed. In the corner of the cell, something that had been lying very still began,
                slowly, to sit up.'''),
        ),
        Topic(
            requests=("describe an enchanted forest that feels wrong, for a chapter where Maren gets lost",
                      "I need a description of a creepy enchanted forest, wrongness, no monsters shown"),
            reply=_t('''
                The trees of the Hollowmere grew too close together and too straight, like the bars of a
                cage no one remembered building. Their bark was smooth and grey as skin. When Maren laid her
                palm against one, it was warm.

                There was no birdsong. There was no wind. And yet the leaves overhead moved — all of them, at
                once, turning slowly to face her as she passed.

                She walked for an hour by her reckoning and came back to her own footprints in the moss. They
                were facing the other way.'''),
            alt=_t('''
                The enchanted forest was beautiful and magical. Sunlight streamed through the tall trees,
                butterflies danced among the flowers, and a gentle stream sparkled nearby. Maren felt a little
                nervous, but mostly she felt amazed by the wonderful sights all around her.'''),
            alt_feedback=("it's supposed to feel WRONG. unsettling, not pretty",
                          "too pretty. I said creepy, make the reader uneasy"),
            more=_t('''
                At dusk the trees began to whisper. Not words — not at first. Just the soft, wet sound of
                something swallowing, again and again, all around her.

                Maren lit no fire. She sat with her back to the largest trunk and her knife across her knees,
                and she did not sleep, and she did not look up, because she had already looked up once and
                the shapes in the canopy had been far too many to be branches.'''),
        ),
        Topic(
            requests=("write a short letter from a dying queen to her estranged daughter",
                      "letter scene: Queen Ysolde, dying, writes to her daughter who ran away 10 years ago"),
            reply=_t('''
                *My Ilse,*

                *They tell me I have until the thaw. I have told them I intend to disappoint them, but the
                physicians have stopped laughing at my jokes, so I suspect they are right.*

                *I will not ask you to come home. I forfeited the right to ask you anything on the night I
                chose the crown over your voice. I only want you to know that I kept your room as it was. The
                window still sticks. I never let them fix it.*

                *Forgive me, or don't. But live, my darling. Live loudly. It is the one thing I never learned.*

                *— Mother*'''),
            again=_t('''
                *Ilse —*

                *The ink shakes; forgive the hand, not the heart. I have ruled forty years and written ten
                thousand letters, and not one was as hard as this.*

                *You were right about the war. You were right about your father. You were right to leave.
                There. Three admissions from a queen. Keep this letter; it will be worth a fortune to
                historians.*

                *I love you. I always did, very badly.*'''),
            more=_t('''
                Ilse read the letter twice by the light of the inn's one candle, then folded it along its
                creases and held it over the flame.

                She did not burn it. She could not. Her hand simply stayed there, shaking, until the paper
                was warm and the wax of the royal seal began to weep red down her wrist.'''),
        ),
    ),
)

NONNATIVE = PersonaSpec(
    key="nonnative_email",
    summary="Non-native English speaker working in logistics; asks for help with short, polite work "
            "emails and grammar corrections; wants simple words and short texts.",
    places=(("Brazil", "São Paulo"), ("Vietnam", "Ho Chi Minh"), ("Turkey", "Istanbul"),
            ("Poland", "Mazovia"), ("Indonesia", "Jakarta")),
    accept_language="en-US,en;q=0.8,pt;q=0.6",
    long_feedback=("is too long, I need short email", "please more short, my boss not read long email",
                   "too much text, only 3 or 4 lines please"),
    weights=_weights(reattempt_with_feedback=2.0, positive_feedback=1.4, clarification=1.0),
    phrases={"positive_feedback": ("thank you very much, is perfect", "very good thank you my friend",
                                   "thanks!! exactly what i need"),
             "negative_feedback": ("is not correct i think", "no this is wrong")},
    filler=(
        "In professional communication, it is generally advisable to maintain a courteous and formal "
        "tone, particularly when addressing superiors or external stakeholders, as this reflects well on "
        "both you and your organisation.",
        "Additionally, you may wish to consider including a clear subject line, a brief summary of the "
        "key points at the beginning of the message, and a polite closing that invites the recipient to "
        "respond should they require any further clarification.",
        "It may also be beneficial to proofread your message carefully before sending it, or to use a "
        "grammar-checking tool, in order to avoid any misunderstandings that could arise from ambiguous "
        "phrasing.",
    ),
    topics=(
        Topic(
            requests=("pls help me write email to my boss for ask 2 days holiday next week",
                      "how i write email for ask day off to manager, is for family reason"),
            reply=_t('''
                Subject: Day off request

                Hi Mark,

                Could I take two days off next week, on Thursday and Friday? It is for a family matter.
                I will finish my open tasks before I leave, and Ana can help with urgent shipments.

                Thank you,
                Lucas'''),
            alt=_t('''
                Subject: Formal Request for a Leave of Absence

                Dear Mr. Thompson,

                I hope this message finds you well. I am writing to formally request your kind consideration
                regarding a leave of absence for a period of two (2) working days during the forthcoming week,
                namely Thursday and Friday, owing to pressing familial obligations that necessitate my presence.
                I shall endeavour to ensure that all outstanding responsibilities are duly addressed prior to
                my departure, and I would be most grateful for your favourable response at your earliest
                convenience.

                Yours faithfully,
                Lucas'''),
            alt_feedback=("please more simple words, my english is not so good",
                          "too formal, my boss is friendly, we use first name"),
            terms=(("open tasks", "\"Open tasks\" means work that is not finished yet."),),
        ),
        Topic(
            requests=("how i say politely to client that shipment is late because customs",
                      "write message to client: container is delay 5 days, customs inspection, sorry"),
            reply=_t('''
                Subject: Update on your shipment

                Dear Ms. Chen,

                I am sorry to tell you that your shipment will arrive about 5 days late. Customs chose the
                container for an inspection, and we cannot speed this up. The new delivery date is June 14.

                We will tell you right away if anything changes. Sorry for the trouble.

                Best regards,
                Lucas'''),
            alt=_t('''
                Dear valued customer, we regret to inform you that unforeseen regulatory procedures
                undertaken by the competent customs authorities have resulted in an unavoidable deferral of
                the estimated time of arrival of the consignment in question. We sincerely apologise for any
                inconvenience this may occasion and appreciate your understanding.'''),
            alt_feedback=("client will not understand this, more simple please",
                          "too difficult words. simple english please"),
            terms=(("speed this up", "\"Speed up\" means make something go faster."),),
        ),
        Topic(
            requests=("correct my english: 'I am agree with you and I will sending the report tomorrow'",
                      "is correct? 'Yesterday I have send the invoice to the client'"),
            reply=_t('''
                Corrected: **"I agree with you, and I will send the report tomorrow."**

                - "agree" is a verb, so we don't use "am": ~~I am agree~~ → **I agree**.
                - After "will", use the base verb: ~~will sending~~ → **will send**.'''),
            again=_t('''
                Here is the corrected sentence: **"I agree with you. I will send the report tomorrow."**
                Two small fixes: say "I agree" (not "I am agree"), and "will send" (not "will sending").'''),
            terms=(("base verb", "The base verb is the simple form of the verb, without -s, -ing or -ed: "
                    "send, go, write."),),
        ),
        Topic(
            requests=("write short text for whatsapp to driver: pick up at warehouse 7am tomorrow, gate 3",
                      "message for truck driver, loading tomorrow 7 am gate 3, bring documents"),
            reply="Hi Carlos! Tomorrow please pick up the load at the warehouse at 7:00, gate 3. Don't "
                  "forget the delivery documents. Thanks! 🚚",
            again="Good morning Carlos, reminder: pickup tomorrow 7am at gate 3 of the warehouse. Please "
                  "bring the documents. Thank you!",
        ),
    ),
)

SQL_ANALYST = PersonaSpec(
    key="sql_analyst",
    summary="Data analyst who works in PostgreSQL; wants a single correct query with at most one line "
            "of explanation; corrects dialect mistakes (MySQL syntax) immediately.",
    places=(("United States", "New York"), ("Netherlands", "North Holland"), ("Singapore", ""),
            ("United States", "Illinois")),
    long_feedback=("just the query please", "I only need the SQL, not the tutorial"),
    weights=_weights(reattempt_with_feedback=2.0, new_request=1.4, continuation=0.2),
    filler=(
        "**Indexes.** Make sure the columns you filter and join on are indexed. `EXPLAIN ANALYZE` shows "
        "you the actual query plan and timing, which is the best way to find slow steps.",
        "**NULLs.** Remember that aggregates like `SUM` and `AVG` ignore NULLs, while `COUNT(*)` counts "
        "every row. Use `COALESCE` if you want NULLs treated as zero.",
        "**Readability.** Common table expressions (`WITH ...`) make long queries much easier to read "
        "and debug, because you can run each step on its own.",
        "**Time zones.** If your timestamps are `timestamptz`, `date_trunc` works in the session time "
        "zone, so set it explicitly when the report must follow a particular zone.",
    ),
    topics=(
        Topic(
            requests=("top 5 customers by revenue for each month, table orders(customer_id, amount, created_at)",
                      "postgres: per month, the 5 customers with the highest total order amount"),
            reply=_t('''
                ```sql
                WITH monthly AS (
                  SELECT date_trunc('month', created_at) AS month, customer_id, SUM(amount) AS revenue
                  FROM orders
                  GROUP BY 1, 2
                )
                SELECT month, customer_id, revenue
                FROM (
                  SELECT *, ROW_NUMBER() OVER (PARTITION BY month ORDER BY revenue DESC) AS rn
                  FROM monthly
                ) ranked
                WHERE rn <= 5
                ORDER BY month, revenue DESC;
                ```

                `ROW_NUMBER()` ranks customers within each month; use `RANK()` if you want ties included.'''),
            short=_t('''
                ```sql
                SELECT month, customer_id, revenue FROM (
                  SELECT date_trunc('month', created_at) AS month, customer_id, SUM(amount) AS revenue,
                         ROW_NUMBER() OVER (PARTITION BY date_trunc('month', created_at) ORDER BY SUM(amount) DESC) AS rn
                  FROM orders GROUP BY 1, 2
                ) t WHERE rn <= 5 ORDER BY month, revenue DESC;
                ```'''),
            alt=_t('''
                ```sql
                SELECT DATE_FORMAT(created_at, '%Y-%m') AS month, customer_id, SUM(amount) AS revenue
                FROM orders
                GROUP BY month, customer_id
                ORDER BY month, revenue DESC
                LIMIT 5;
                ```'''),
            alt_feedback=("I'm on PostgreSQL, not MySQL. DATE_FORMAT doesn't exist",
                          "this is mysql syntax and the LIMIT is global, not per month. postgres please"),
            terms=(("PARTITION BY", "`PARTITION BY month` restarts the window function for every month, so "
                    "`ROW_NUMBER()` counts 1, 2, 3... separately inside each month."),),
        ),
        Topic(
            requests=("running total of daily sales in postgres", "cumulative sum by day, table sales(day, amount)"),
            reply=_t('''
                ```sql
                SELECT day, SUM(amount) AS daily,
                       SUM(SUM(amount)) OVER (ORDER BY day) AS running_total
                FROM sales
                GROUP BY day
                ORDER BY day;
                ```

                The outer `SUM(...) OVER (ORDER BY day)` is a window function that accumulates the daily totals.'''),
            short=_t('''
                ```sql
                SELECT day, SUM(SUM(amount)) OVER (ORDER BY day) AS running_total
                FROM sales GROUP BY day ORDER BY day;
                ```'''),
            alt=_t('''
                ```sql
                SET @total := 0;
                SELECT day, (@total := @total + amount) AS running_total FROM sales ORDER BY day;
                ```'''),
            alt_feedback=("user variables? that's MySQL. I use postgres", "postgres has window functions, use them"),
            terms=(("window function", "A window function computes a value over a set of rows related to "
                    "the current row (its 'window') without collapsing them like GROUP BY does."),),
        ),
        Topic(
            requests=("delete duplicate rows keeping the newest, table events(id, user_id, kind, created_at)",
                      "postgres dedupe: keep latest row per (user_id, kind)"),
            reply=_t('''
                ```sql
                DELETE FROM events e
                USING (
                  SELECT id, ROW_NUMBER() OVER (PARTITION BY user_id, kind ORDER BY created_at DESC, id DESC) AS rn
                  FROM events
                ) d
                WHERE e.id = d.id AND d.rn > 1;
                ```

                Run it as a `SELECT` first to check what would be deleted.'''),
            short=_t('''
                ```sql
                DELETE FROM events e USING (
                  SELECT id, ROW_NUMBER() OVER (PARTITION BY user_id, kind ORDER BY created_at DESC, id DESC) rn
                  FROM events) d
                WHERE e.id = d.id AND d.rn > 1;
                ```'''),
            again=_t('''
                ```sql
                DELETE FROM events e
                WHERE EXISTS (
                  SELECT 1 FROM events newer
                  WHERE newer.user_id = e.user_id AND newer.kind = e.kind
                    AND (newer.created_at, newer.id) > (e.created_at, e.id)
                );
                ```'''),
        ),
        Topic(
            requests=("median order value per country in postgres", "how to get median amount by country, postgres"),
            reply=_t('''
                ```sql
                SELECT country, percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) AS median_amount
                FROM orders
                GROUP BY country;
                ```

                `percentile_cont` interpolates; use `percentile_disc` to get an actual value from the data.'''),
            short="```sql\nSELECT country, percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) FROM orders GROUP BY country;\n```",
            terms=(("percentile_cont", "`percentile_cont(0.5)` is the continuous median: with an even number "
                    "of rows it averages the two middle values."),),
        ),
    ),
)

MARKETER = PersonaSpec(
    key="marketer",
    summary="Small-business marketer who wants punchy, casual social-media copy with emojis, short "
            "(under 280 characters); often asks for more options; dislikes corporate tone.",
    places=(("United States", "Florida"), ("United States", "Colorado"), ("Australia", "New South Wales"),
            ("Canada", "British Columbia")),
    long_feedback=("shorter! under 20 words", "way too long for instagram, 1-2 lines max"),
    weights=_weights(reattempt_without_feedback=2.0, reattempt_with_feedback=1.8, clarification=0.2),
    phrases={"reattempt_without_feedback": ("give me 3 more options", "another one", "more options pls",
                                            "try again"),
             "positive_feedback": ("love it!! 😍", "perfect, posting this", "yesss that's the vibe")},
    filler=(
        "When crafting social media content, it's important to keep your target audience in mind. "
        "Consider their interests, pain points and the platforms they use most. Consistency in brand "
        "voice across channels builds recognition and trust over time.",
        "You might also want to include a clear call to action, relevant hashtags (typically 3–5 on "
        "Instagram), and a high-quality image or short video. Posting at times when your audience is "
        "most active can significantly improve engagement.",
        "Finally, track the performance of each post using the platform's built-in analytics so you can "
        "learn what resonates with your followers and refine your strategy over time.",
    ),
    topics=(
        Topic(
            requests=("instagram caption for our coffee shop's new autumn menu (pumpkin latte, apple cake)",
                      "caption for IG: fall menu is here at Bean There cafe, pumpkin spice + apple cake"),
            reply="Sweater weather, meet your new best friends 🍂☕ Pumpkin spice lattes + warm apple cake "
                  "are BACK at Bean There. Come cozy up! #FallVibes #PumpkinSpice #BeanThere",
            alt=_t('''
                We are pleased to announce the launch of our seasonal autumn menu, featuring a carefully
                curated selection of beverages and baked goods, including our pumpkin spice latte and apple
                cake. We invite valued customers to visit our establishment to experience these offerings.'''),
            alt_feedback=("too formal, make it fun and add emojis", "sounds like a bank lol. casual please"),
            again="Pumpkin season just walked in 🎃 Grab a PSL + a slice of apple cake before they're gone! "
                  "📍Bean There #AutumnMenu",
        ),
        Topic(
            requests=("tweet announcing 30% off all candles this weekend, handmade candle shop",
                      "write a tweet: weekend sale 30% off, Wick & Co candles"),
            reply="🕯️ WEEKEND SALE 🕯️ 30% off every hand-poured candle at Wick & Co. Treat your space "
                  "(and your nose). Ends Sunday! ✨",
            alt="Wick & Co. is offering a 30% discount on all products this weekend. Terms and conditions apply.",
            alt_feedback=("boring. more hype, emojis", "needs more energy!!"),
            again="Your home called. It wants candles. 🔥 30% off everything at Wick & Co this weekend only!",
        ),
        Topic(
            requests=("slogan ideas for a bike repair shop called Spoke Folks",
                      "need a catchy slogan for my bike shop Spoke Folks"),
            reply=_t('''
                1. Spoke Folks — we fix what moves you. 🚲
                2. Flat tire? Flat-out fast fixes.
                3. Good people. Great gears.
                4. Keep calm and pedal on.
                5. Your ride, our pride.'''),
            again=_t('''
                1. Spoke Folks: wheel be there for you.
                2. Tuned up, ready to roll.
                3. From squeaks to peaks.'''),
            more=_t('''
                6. Brakes, breaks and good vibes.
                7. Love your ride again.
                8. We speak fluent bicycle.'''),
        ),
        Topic(
            requests=("linkedin post: we're hiring a barista, friendly team, flexible hours",
                      "short linkedin post for hiring baristas at Bean There"),
            reply="☕ We're hiring! Bean There is looking for a friendly barista to join our small, fun "
                  "team. Flexible hours, free coffee, great people. DM us or drop by the shop! #Hiring #Barista",
            alt=_t('''
                Bean There Ltd. is currently seeking applications for the position of Barista. The successful
                candidate will demonstrate excellent customer service skills and the ability to work in a
                fast-paced environment. Remuneration is commensurate with experience. Please submit your CV
                and cover letter via our careers portal.'''),
            alt_feedback=("too corporate, we're a tiny cafe", "make it warmer and shorter, we're not a bank"),
        ),
    ),
)

HOME_COOK = PersonaSpec(
    key="home_cook",
    summary="Busy parent cooking at home; wants quick weeknight recipes (under 30 minutes, few "
            "ingredients) on the stovetop because they have no oven; likes plain step lists.",
    places=(("United States", "Georgia"), ("United Kingdom", "England"), ("South Africa", "Gauteng"),
            ("United States", "Michigan")),
    long_feedback=("too long, just the ingredients and steps", "i don't need the story, just the recipe"),
    weights=_weights(reattempt_with_feedback=1.8, clarification=1.2, positive_feedback=1.4),
    filler=(
        "Cooking at home is a wonderful way to save money and control exactly what goes into your food. "
        "Many families find that planning meals for the week on Sunday reduces stress and food waste.",
        "Feel free to adapt this recipe to your taste. Spices, vegetables and proteins can be swapped "
        "based on what you have in the fridge, and leftovers usually keep for three days in a sealed "
        "container.",
        "For best results, prepare all your ingredients before you start cooking (the French call this "
        "'mise en place'). It makes the process calmer and helps you avoid burning anything while you "
        "chop.",
    ),
    topics=(
        Topic(
            requests=("quick dinner with chicken thighs, no oven, 30 min max",
                      "chicken thighs recipe on the stove, something the kids will eat"),
            reply=_t('''
                **Honey-garlic skillet chicken (25 min, serves 4)**

                Ingredients: 6 boneless chicken thighs, salt, pepper, 1 tbsp oil, 3 garlic cloves, 3 tbsp honey,
                3 tbsp soy sauce, 2 tbsp water.

                1. Season the thighs and brown them in oil over medium-high heat, 5–6 min per side.
                2. Lower the heat, add the minced garlic for 30 seconds.
                3. Stir in honey, soy sauce and water; simmer 3–4 min until sticky, turning the chicken.
                4. Serve with rice and steamed broccoli.'''),
            alt=_t('''
                **Oven-roasted lemon chicken thighs (40 min)**

                1. Preheat the oven to 220°C / 425°F.
                2. Toss the thighs with olive oil, lemon, garlic and thyme.
                3. Roast skin-side up for 35 minutes until golden.'''),
            alt_feedback=("I don't have an oven, can you do it on the stove?", "no oven!! stovetop please"),
            terms=(("simmer", "Simmer means cooking just below boiling: small bubbles rising gently, not a "
                    "rolling boil. Turn the heat to low-medium."),
                   ("minced", "Minced means chopped very finely, into tiny pieces.")),
        ),
        Topic(
            requests=("vegetarian pasta in 20 minutes with stuff I probably have",
                      "easy veggie pasta for weeknight, few ingredients"),
            reply=_t('''
                **Garlic–tomato spinach pasta (20 min, serves 4)**

                Ingredients: 400 g pasta, 2 tbsp olive oil, 3 garlic cloves, 1 can chopped tomatoes, 2 handfuls
                spinach, salt, chili flakes, parmesan.

                1. Cook the pasta until al dente; keep a cup of the water.
                2. Meanwhile fry garlic in oil 1 min, add tomatoes, simmer 8 min.
                3. Stir in spinach until wilted, then the pasta and a splash of pasta water.
                4. Top with parmesan.'''),
            terms=(("al dente", "Al dente (Italian for 'to the tooth') means pasta cooked until tender but "
                    "still slightly firm when you bite it — usually 1 minute less than the packet says."),),
            again=_t('''
                **Creamy pea and lemon pasta (15 min)**

                1. Boil pasta; add 2 cups frozen peas for the last 2 minutes.
                2. Drain, keeping some water. Stir in 2 tbsp cream cheese, lemon zest, pepper and a splash of water.'''),
        ),
        Topic(
            requests=("what can I make with leftover rice", "ideas for leftover cooked rice, quick"),
            reply=_t('''
                - **Egg fried rice** (10 min): fry rice with scrambled eggs, frozen peas, soy sauce.
                - **Rice cakes**: mix rice with an egg and cheese, fry spoonfuls until crispy.
                - **Rice pudding** on the stove: simmer rice with milk, sugar and cinnamon 15 min.
                - **Burrito bowls**: rice, canned beans, corn, salsa, grated cheese.'''),
            more=_t('''
                - **Stuffed peppers** in a covered pan: fill halved peppers with rice, tomato sauce and cheese, cook 15 min covered.
                - **Soup booster**: add a cup of rice to any soup at the end to make it more filling.'''),
        ),
        Topic(
            requests=("lunchbox ideas for my 7 year old that don't need heating",
                      "cold lunch ideas for kids, no microwave at school"),
            reply=_t('''
                1. Pinwheel wraps: tortilla + cream cheese + ham, rolled and sliced.
                2. Pasta salad with cherry tomatoes, cucumber and cheese cubes.
                3. DIY "lunchable": crackers, cheese slices, turkey, grapes.
                4. Hummus with carrot and pepper sticks, pita triangles.
                5. Mini muffins (made ahead) with yogurt and berries.'''),
            more=_t('''
                6. Rice paper rolls with chicken and lettuce.
                7. Boiled egg, cheese stick, apple slices with a squeeze of lemon so they don't brown.'''),
        ),
    ),
)

FITNESS = PersonaSpec(
    key="home_fitness",
    summary="Beginner working out at home with no equipment; wants short routines (20 minutes) with "
            "simple instructions and some motivation; asks what exercise terms mean.",
    places=(("United States", "Arizona"), ("India", "Maharashtra"), ("Mexico", "Jalisco"),
            ("United Kingdom", "England")),
    long_feedback=("too long, just give me the list of exercises", "shorter please, i just want the routine"),
    weights=_weights(clarification=1.4, reattempt_with_feedback=1.6),
    filler=(
        "Before starting any new exercise programme, it is a good idea to consult your doctor, especially "
        "if you have any pre-existing medical conditions, injuries, or have been inactive for a long time.",
        "Remember that consistency matters more than intensity. Three sessions a week, done every week, "
        "will bring much better results than an intense programme that you abandon after ten days.",
        "Nutrition and sleep are just as important as the workout itself. Aim for seven to nine hours of "
        "sleep, drink enough water, and eat enough protein to support muscle recovery.",
    ),
    topics=(
        Topic(
            requests=("20 minute full body workout at home, no equipment, beginner",
                      "beginner home workout no weights 20 min"),
            reply=_t('''
                **20-min beginner full body (no equipment)** — do 3 rounds, 40 s work / 20 s rest:

                1. Squats
                2. Knee push-ups
                3. Glute bridges
                4. Reverse lunges (alternate legs)
                5. Plank (hold)
                6. Jumping jacks (or step jacks)

                Rest 1 minute between rounds. You've got this! 💪'''),
            alt=_t('''
                **Full body strength**

                1. Barbell back squat 4×8
                2. Dumbbell bench press 4×10
                3. Lat pulldown 3×12
                4. Cable rows 3×12'''),
            alt_feedback=("I said no equipment, I work out at home", "i don't have a gym or weights"),
            terms=(("glute bridges", "Lie on your back, knees bent, feet flat. Push through your heels to "
                    "lift your hips until your body is a straight line from knees to shoulders, then lower "
                    "slowly."),),
            more="Next week, make it harder by doing 4 rounds, or 45 s work / 15 s rest. That's called "
                 "progressive overload — small increases so your body keeps adapting.",
        ),
        Topic(
            requests=("easy core workout for beginners", "ab routine that doesn't hurt my neck"),
            reply=_t('''
                **10-min core** — 2 rounds:

                - Dead bug: 10 per side
                - Forearm plank: 30 s
                - Side plank: 20 s per side
                - Bird dog: 10 per side
                - Hollow hold (knees bent): 20 s

                Keep your lower back pressed to the floor on the floor exercises — no neck pulling needed.'''),
            terms=(("dead bug", "Lie on your back with arms up and knees bent at 90°. Slowly lower the "
                    "opposite arm and leg toward the floor, then switch. It trains your core without "
                    "straining your neck."),
                   ("hollow hold", "Lie on your back, lift your shoulders and legs slightly off the floor and "
                    "hold, keeping your lower back flat on the ground.")),
        ),
        Topic(
            requests=("how much protein do I need to build muscle", "protein per day for muscle gain?"),
            reply="A common evidence-based target is **1.6 g of protein per kg of body weight per day** "
                  "(about 0.7 g per lb). For a 70 kg person that's about 110 g a day, spread over 3–4 meals.",
            short="About 1.6 g per kg of body weight per day.",
            terms=(("evidence-based", "It means the number comes from scientific studies, not just opinion."),),
        ),
        Topic(
            requests=("couch to 5k plan but shorter, 4 weeks", "beginner running plan 4 weeks"),
            reply=_t('''
                3 runs a week, always start with 5 min brisk walking:

                - **Week 1:** 8× (1 min jog + 90 s walk)
                - **Week 2:** 6× (2 min jog + 1 min walk)
                - **Week 3:** 4× (4 min jog + 1 min walk)
                - **Week 4:** 2× (8 min jog + 1 min walk), then try 20 min easy

                Go slow enough that you could talk.'''),
            terms=(("brisk walking", "Walking fast enough that your breathing speeds up but you can still talk."),),
        ),
    ),
)

HISTORY = PersonaSpec(
    key="history_buff",
    summary="Retired history teacher who enjoys long, detailed answers with dates, names and sources; "
            "asks follow-up questions and to continue; complains about superficial answers.",
    places=(("United States", "Massachusetts"), ("United Kingdom", "England"), ("Canada", "Nova Scotia"),
            ("Australia", "Queensland")),
    long_feedback=(),
    weights=_weights(continuation=2.0, clarification=1.4, reattempt_with_feedback=1.4, other=0.2),
    phrases={"continuation": ("please go on", "what happened next?", "continue, this is fascinating",
                              "and after that?"),
             "positive_feedback": ("Excellent, thank you. Very thorough.", "Splendid answer, thank you.")},
    topics=(
        Topic(
            requests=("What were the main causes of the First World War? Please be thorough.",
                      "Explain the causes of World War I in detail, with the key dates."),
            reply=_t('''
                Historians usually group the causes under four long-term factors and one trigger:

                1. **Militarism** — an arms race, above all the Anglo-German naval race after 1898, and rigid
                   mobilisation timetables such as Germany's Schlieffen Plan.
                2. **Alliances** — the Triple Alliance (Germany, Austria-Hungary, Italy, 1882) against the
                   Triple Entente (France, Russia, Britain, completed 1907), which turned a regional crisis into
                   a continental war.
                3. **Imperialism** — colonial rivalries, e.g. the Moroccan crises of 1905 and 1911.
                4. **Nationalism** — pan-Slavism in the Balkans, French revanchism after 1871, and Austria's
                   fear of South Slav nationalism after the Balkan Wars of 1912–13.

                **Trigger:** the assassination of Archduke Franz Ferdinand in Sarajevo on 28 June 1914 by Gavrilo
                Princip. Austria-Hungary's ultimatum to Serbia (23 July) and the July Crisis led to declarations of
                war from 28 July to 4 August 1914.

                For further reading: Christopher Clark, *The Sleepwalkers* (2012); Margaret MacMillan, *The War
                That Ended Peace* (2013).'''),
            alt="WWI was caused by the assassination of Franz Ferdinand in 1914.",
            alt_feedback=("That's superficial. Can you go into more detail and mention sources?",
                          "Surely there is more to it than that. The long-term causes, please."),
            more=_t('''
                The July Crisis itself unfolded quickly. On 5–6 July Germany gave Austria-Hungary the so-called
                "blank cheque", promising support whatever it did. Serbia's reply to the ultimatum on 25 July
                accepted most demands, but Vienna broke off relations and declared war on 28 July. Russia began
                general mobilisation on 30 July; Germany declared war on Russia on 1 August and on France on
                3 August, and its invasion of Belgium brought Britain in on 4 August, citing the 1839 Treaty of
                London guaranteeing Belgian neutrality.'''),
            terms=(("Schlieffen Plan", "The Schlieffen Plan was Germany's pre-war strategy for a two-front war: "
                    "defeat France quickly by sweeping through Belgium, then turn east against Russia before "
                    "Russia could fully mobilise. It made German mobilisation effectively mean war with France."),
                   ("revanchism", "Revanchism (from French *revanche*, revenge) was the French desire to recover "
                    "Alsace-Lorraine, lost to Germany in 1871 after the Franco-Prussian War.")),
        ),
        Topic(
            requests=("Why did the Western Roman Empire fall? I'd like a nuanced answer.",
                      "Discuss the fall of the Western Roman Empire and the historiographical debate."),
            reply=_t('''
                There is no single cause; modern historians stress a combination of pressures over the 4th and 5th
                centuries:

                - **Military and migration pressure**: the Gothic victory at Adrianople (378), the Rhine crossing
                  of 406, the sack of Rome by Alaric (410) and by the Vandals (455).
                - **Fiscal erosion**: the loss of North Africa to the Vandals (439) cut the West's richest tax
                  base, so it could no longer pay its armies.
                - **Political instability**: frequent usurpations and child emperors dominated by generals such
                  as Stilicho, Aetius and Ricimer.
                - **Division of the empire** (395): the East was wealthier and more defensible.

                The traditional end date is 476, when Odoacer deposed Romulus Augustulus. Historiography ranges from
                Gibbon's "decline and fall" (1776–89) to Peter Brown's "transformation" of Late Antiquity, and back
                towards violent collapse in Bryan Ward-Perkins, *The Fall of Rome and the End of Civilization* (2005).'''),
            alt="Rome fell because of barbarian invasions and moral decline.",
            alt_feedback=("That is the old Gibbon cliché. Please give me the modern debate.",
                          "Too simplistic. I taught this for 30 years; give me more depth."),
            more=_t('''
                Meanwhile the Eastern Roman Empire survived for almost another thousand years, until the Ottoman
                conquest of Constantinople in 1453. Under Justinian (527–565) it even reconquered North Africa,
                Italy and part of Spain, though the Gothic War (535–554) devastated Italy and the Lombard invasion
                of 568 undid much of the gain.'''),
            terms=(("Late Antiquity", "Late Antiquity is the period from roughly the 3rd to the 8th century, "
                    "seen as a time of transformation — of religion, culture and government — rather than "
                    "simple decline."),),
        ),
        Topic(
            requests=("What was the impact of the printing press in Europe?",
                      "How did Gutenberg's press change European society? Detailed answer please."),
            reply=_t('''
                Johannes Gutenberg's movable-type press (Mainz, c. 1450; the 42-line Bible c. 1455) made books far
                cheaper and faster to produce. By 1500 presses operated in more than 250 European towns and had
                printed perhaps 8–20 million copies of incunabula.

                Its effects included:
                - **The Reformation**: Luther's writings after 1517 circulated in hundreds of thousands of copies.
                - **Science**: standardised texts and diagrams allowed scholars to build on each other's work —
                  what Elizabeth Eisenstein called print's "fixity".
                - **Vernacular languages**: printing in German, English and French helped standardise them.
                - **Literacy and the public sphere**: pamphlets, news sheets and, later, newspapers.

                Key reading: Elizabeth Eisenstein, *The Printing Press as an Agent of Change* (1979); Andrew
                Pettegree, *The Book in the Renaissance* (2010).'''),
            more="By the 17th century, printed newspapers appeared — the *Relation* in Strasbourg (1605) is often "
                 "cited as the first — and the first English daily, the *Daily Courant*, followed in 1702.",
            terms=(("incunabula", "Incunabula are books printed in Europe before 1501, in the 'cradle' "
                    "(Latin *incunabula*) period of printing."),),
        ),
    ),
)

JOB_SEEKER = PersonaSpec(
    key="job_seeker",
    summary="Logistics coordinator with five years of warehouse experience moving into project "
            "management; wants tailored cover letters and resume bullets with concrete numbers; "
            "rejects generic text.",
    places=(("United States", "Pennsylvania"), ("United States", "Washington"), ("Nigeria", "Lagos"),
            ("Ireland", "Leinster")),
    long_feedback=("too long, one page max", "cut it to 3 short paragraphs"),
    weights=_weights(reattempt_with_feedback=2.2, positive_feedback=1.2),
    filler=(
        "Remember to tailor each application to the specific company and role. Research the company's "
        "values, recent news and culture, and reflect them in your letter to show genuine interest.",
        "Recruiters often spend only a few seconds on each application, so make sure the most important "
        "information stands out. Use clear headings, consistent formatting and a professional font.",
        "It is also advisable to ask a friend or mentor to review your documents before submitting them, "
        "as a second pair of eyes can catch errors and suggest improvements you might have missed.",
    ),
    topics=(
        Topic(
            requests=("Write a cover letter for a junior project manager job at Northwind Logistics. My name "
                      "is PRESIDIO_ANONYMIZED_PERSON, email PRESIDIO_ANONYMIZED_EMAIL_ADDRESS. I have 5 years "
                      "as a warehouse coordinator and cut shipping costs by 15%.",),
            reply=_t('''
                Dear Hiring Manager,

                I'm applying for the Junior Project Manager role at Northwind Logistics. For five years I have
                coordinated daily operations in a 120,000 sq ft warehouse, and I'm ready to bring that hands-on
                experience to project work.

                In my current role I led a carrier-renegotiation project that cut shipping costs by 15% in one
                year, and I rolled out a new slotting plan with a team of 12 that reduced picking errors by a
                third. I plan work in weekly sprints, track it in Smartsheet, and report to site leadership.

                I'd welcome the chance to discuss how I can help Northwind deliver projects on time and on budget.

                Best regards,
                PRESIDIO_ANONYMIZED_PERSON
                PRESIDIO_ANONYMIZED_EMAIL_ADDRESS'''),
            alt=_t('''
                Dear Sir or Madam,

                I am writing to express my interest in the position at your company. I am a hard-working,
                motivated team player with excellent communication skills and a passion for success. I believe I
                would be a great fit for your organisation and I look forward to hearing from you.

                Sincerely,
                PRESIDIO_ANONYMIZED_PERSON'''),
            alt_feedback=("too generic, mention my 5 years at the warehouse and the 15% cost reduction",
                          "this could be anyone. use my actual achievements"),
            redacted=True,
        ),
        Topic(
            requests=("rewrite my resume bullet: 'responsible for managing inventory'",
                      "make this resume line stronger: 'helped with shipping schedules'"),
            reply=_t('''
                Stronger versions, with numbers:

                - "Managed inventory of 8,000+ SKUs with 99.2% cycle-count accuracy."
                - "Cut stock-outs by 25% by introducing weekly reorder reviews with purchasing."

                Start with an action verb, then the scope, then the result.'''),
            alt="- Was in charge of inventory management tasks and related duties as assigned.",
            alt_feedback=("that's even weaker lol. add numbers", "no, I need impact and numbers"),
            terms=(("SKUs", "SKU stands for stock-keeping unit: one distinct product variant you track in "
                    "inventory (e.g. a shirt in size M, blue)."),),
        ),
        Topic(
            requests=("how do I answer 'tell me about yourself' in a PM interview, coming from warehouse ops",
                      "interview answer: tell me about yourself, career change to project management"),
            reply=_t('''
                Use present → past → future, about 60–90 seconds:

                "I'm a logistics coordinator at a regional distribution center, where I run daily operations for
                a team of 12. Over the past five years I've increasingly led improvement projects — for example,
                a carrier renegotiation that cut shipping costs 15%. I found I enjoy the planning and
                coordination side most, so I completed my CAPM certification, and now I'm looking to move into a
                full project management role where I can deliver projects like that every day."'''),
            terms=(("CAPM", "CAPM (Certified Associate in Project Management) is an entry-level project "
                    "management certification from the Project Management Institute (PMI)."),),
        ),
        Topic(
            requests=("Write a LinkedIn summary for me. I'm PRESIDIO_ANONYMIZED_PERSON, logistics coordinator "
                      "in transition to project management, 5 years experience.",),
            reply=_t('''
                Logistics coordinator turning operational know-how into project delivery. For five years I've kept
                a busy distribution center running — and led the projects that made it run better: a 15% cut in
                shipping costs, a third fewer picking errors, a smoother peak season.

                CAPM-certified, comfortable with Smartsheet and Jira, and happiest when a plan comes together on
                time. Open to junior project manager roles in supply chain and operations.'''),
            alt="Hardworking professional seeking new opportunities. Team player with strong communication skills.",
            alt_feedback=("generic again. use my numbers please",),
            redacted=True,
        ),
    ),
)

DEVOPS = PersonaSpec(
    key="devops",
    summary="DevOps engineer working with Docker, Kubernetes and bash; wants short commands and config "
            "snippets to paste, no prose; corrects wrong tool choices.",
    places=(("Germany", "Bavaria"), ("United States", "Virginia"), ("Ukraine", "Kyiv City"),
            ("Sweden", "Stockholm")),
    long_feedback=("just the commands", "too long. config only", "skip the explanation pls"),
    weights=_weights(reattempt_with_feedback=2.0, negative_feedback=1.0, continuation=0.2),
    filler=(
        "Before applying any of these changes to production, test them in a staging environment. Container "
        "orchestration errors can cause downtime that affects many services at once.",
        "Keep your configuration in version control and review changes through pull requests. Tools like "
        "Helm, Kustomize or Terraform make it easier to manage environments consistently.",
        "Monitoring and alerting are essential: Prometheus and Grafana are popular open-source choices, "
        "and most cloud providers offer managed alternatives with similar features.",
    ),
    topics=(
        Topic(
            requests=("docker compose for a python app + postgres, with a volume for the db",
                      "compose file: web (build .) + postgres 16, persistent data"),
            reply=_t('''
                ```yaml
                services:
                  db:
                    image: postgres:16
                    environment:
                      POSTGRES_PASSWORD: example
                    volumes:
                      - pgdata:/var/lib/postgresql/data
                  web:
                    build: .
                    environment:
                      DATABASE_URL: postgresql://postgres:example@db:5432/postgres
                    depends_on:
                      - db
                    ports:
                      - "8000:8000"
                volumes:
                  pgdata:
                ```

                The named volume `pgdata` keeps the data across `docker compose down`.'''),
            short=_t('''
                ```yaml
                services:
                  db: {image: postgres:16, environment: {POSTGRES_PASSWORD: example}, volumes: [pgdata:/var/lib/postgresql/data]}
                  web: {build: ., depends_on: [db], ports: ["8000:8000"]}
                volumes: {pgdata: {}}
                ```'''),
            terms=(("named volume", "A named volume is storage managed by Docker (under /var/lib/docker/volumes). "
                    "Unlike a bind mount it isn't tied to a host path and survives container removal."),),
        ),
        Topic(
            requests=("find pods stuck in CrashLoopBackOff across all namespaces",
                      "kubectl one-liner: list crashlooping pods"),
            reply=_t('''
                ```bash
                kubectl get pods -A | grep CrashLoopBackOff
                ```

                Then check why one failed: `kubectl logs <pod> -n <ns> --previous` and
                `kubectl describe pod <pod> -n <ns>` (look at Last State and Events).'''),
            short="```bash\nkubectl get pods -A | grep CrashLoopBackOff\n```",
            terms=(("CrashLoopBackOff", "CrashLoopBackOff means the container keeps exiting and Kubernetes is "
                    "waiting longer and longer (back-off) before restarting it again."),
                   ("--previous", "`--previous` shows the logs of the last terminated container instance — "
                    "the one that crashed — instead of the current one.")),
            again=_t('''
                ```bash
                kubectl get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{" "}{.status.containerStatuses[*].state.waiting.reason}{"\\n"}{end}' | grep CrashLoopBackOff
                ```'''),
        ),
        Topic(
            requests=("bash: delete files older than 7 days in /var/log/myapp", "cron-safe cleanup of old logs, 7 days"),
            reply=_t('''
                ```bash
                find /var/log/myapp -type f -name '*.log' -mtime +7 -print -delete
                ```

                Run it without `-delete` first to see what would be removed.'''),
            short="```bash\nfind /var/log/myapp -type f -name '*.log' -mtime +7 -delete\n```",
            alt=_t('''
                ```powershell
                Get-ChildItem C:\\logs -Recurse | Where-Object {$_.LastWriteTime -lt (Get-Date).AddDays(-7)} | Remove-Item
                ```'''),
            alt_feedback=("powershell? it's a linux box", "bash, not powershell"),
            terms=(("-mtime +7", "`-mtime +7` matches files whose contents were last modified more than 7 full "
                    "days (7×24 h) ago."),),
        ),
        Topic(
            requests=("nginx reverse proxy to localhost:3000 with websocket support",
                      "nginx config: proxy / to node on 3000, websockets too"),
            reply=_t('''
                ```nginx
                server {
                    listen 80;
                    server_name example.com;

                    location / {
                        proxy_pass http://127.0.0.1:3000;
                        proxy_http_version 1.1;
                        proxy_set_header Upgrade $http_upgrade;
                        proxy_set_header Connection "upgrade";
                        proxy_set_header Host $host;
                        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                    }
                }
                ```'''),
            alt=_t('''
                ```apache
                <VirtualHost *:80>
                    ProxyPass / http://127.0.0.1:3000/
                    ProxyPassReverse / http://127.0.0.1:3000/
                </VirtualHost>
                ```'''),
            alt_feedback=("I said nginx, not apache", "that's an apache vhost. nginx please"),
            terms=(("Upgrade", "WebSockets start as an HTTP request with `Upgrade: websocket`. Nginx must pass "
                    "that header (and use HTTP/1.1) or the connection can't switch protocols."),),
        ),
    ),
)

PARENT = PersonaSpec(
    key="parent_homework",
    summary="Parent helping an 8-year-old with homework; wants kid-friendly explanations and small "
            "practice problems, short and playful; asks for more exercises.",
    places=(("United States", "North Carolina"), ("Canada", "Alberta"), ("United Kingdom", "England"),
            ("Kenya", "Nairobi")),
    long_feedback=("my son is 8, make it much shorter", "too long for a kid, 3 sentences please"),
    weights=_weights(continuation=1.6, reattempt_with_feedback=1.6, clarification=0.4),
    phrases={"continuation": ("give me 5 more practice questions", "more please", "can you make more?")},
    filler=(
        "Children learn best when they can connect new ideas to things they already know. Try to use "
        "everyday objects from your home, like toys, snacks or coins, to make abstract ideas concrete.",
        "Educational research suggests that short, frequent practice sessions are more effective than "
        "long ones. Ten to fifteen minutes a day, with plenty of encouragement, is usually enough at this age.",
        "Don't worry if your child doesn't understand immediately. Every child learns at their own pace, "
        "and praising effort rather than results helps build a positive attitude toward learning.",
    ),
    topics=(
        Topic(
            requests=("explain fractions to my 8 year old", "how do I teach my kid (8) what a fraction is"),
            reply=_t('''
                Use a pizza! 🍕

                "If we cut a pizza into 4 equal slices and you eat 1, you ate **one quarter**, written 1/4. The
                bottom number says how many equal pieces the pizza has. The top number says how many pieces
                you have."

                Then ask: "If you eat 3 slices, what fraction is that?" (3/4)'''),
            more=_t('''
                Practice questions:
                1. A chocolate bar has 8 pieces. You eat 2. What fraction did you eat? (2/8 = 1/4)
                2. Which is bigger: 1/2 or 1/4 of a pizza? (1/2)
                3. Cut an apple into 2 equal parts. What is each part called? (one half)
                4. 3 out of 5 balloons are red. What fraction is red? (3/5)
                5. Draw a rectangle, split it into 3 equal parts, color 1. What fraction is colored? (1/3)'''),
            terms=(("equal slices", "All pieces must be the same size — otherwise it isn't a fair fraction!"),),
        ),
        Topic(
            requests=("tricks to learn the 9 times table", "how to help my daughter memorize 9x table"),
            reply=_t('''
                The finger trick ✋✋: hold up 10 fingers. For 9 × 3, fold down the 3rd finger. Fingers left of the
                fold = tens (2), right of the fold = ones (7) → **27**.

                Another pattern: the digits of the answer always add up to 9 (18 → 1+8, 27 → 2+7).'''),
            more=_t('''
                Quiz time:
                1. 9 × 4 = ? (36)
                2. 9 × 7 = ? (63)
                3. 9 × 2 = ? (18)
                4. 9 × 9 = ? (81)
                5. 9 × 6 = ? (54)'''),
        ),
        Topic(
            requests=("why do we have seasons, explain for a kid", "my kid asks why is it cold in winter"),
            reply=_t('''
                The Earth is a little bit tilted, like a spinning top leaning to one side. 🌍

                As it travels around the Sun during the year, sometimes our part of the Earth leans **toward** the
                Sun — sunlight hits us more directly and days are longer: that's summer ☀️. When we lean **away**,
                the light is weaker and days are shorter: winter ❄️.'''),
            alt=_t('''
                Seasons result from Earth's 23.4° axial obliquity relative to the ecliptic plane, which changes
                the solar declination through the year and thus the insolation received per unit area at a given
                latitude.'''),
            alt_feedback=("he's 8!! simple words please", "way too complicated for a child"),
            more="Fun experiment: shine a flashlight straight down on paper — small bright circle (summer). Now "
                 "tilt it — the light spreads out and looks dimmer (winter)!",
        ),
        Topic(
            requests=("give me 10 spelling words for 2nd grade with the 'ai' sound",
                      "2nd grade spelling list, long a sound words"),
            reply="rain, train, paint, snail, tail, mail, wait, chain, brain, sail",
            again="pain, main, nail, gain, trail, plain, faint, raise, afraid, daisy",
            more="Sentences to practise: The snail is slow. I wait for the train. We paint in the rain.",
        ),
    ),
)

ML_RESEARCHER = PersonaSpec(
    key="ml_researcher",
    summary="Machine-learning PhD student who wants precise, mathematical answers with equations in "
            "LaTeX and references; dislikes hand-waving and vague analogies.",
    places=(("United States", "California"), ("Switzerland", "Zurich"), ("China", "Beijing"),
            ("Canada", "Quebec")),
    long_feedback=("too long; just the derivation", "skip the intro, equations only"),
    weights=_weights(clarification=1.4, reattempt_with_feedback=1.8, negative_feedback=0.9),
    filler=(
        "Machine learning is a rapidly evolving field, and new techniques are being developed all the "
        "time. It is important to stay up to date with the latest research by reading papers on arXiv and "
        "attending conferences such as NeurIPS, ICML and ICLR.",
        "In practice, the choice of method depends heavily on your specific dataset, computational "
        "budget and evaluation criteria, so experimentation is essential.",
        "Many popular libraries, such as PyTorch, JAX and Hugging Face Transformers, provide ready-made "
        "implementations that can save you a great deal of time.",
    ),
    topics=(
        Topic(
            requests=("derive the DPO loss from the KL-regularized RLHF objective",
                      "how does DPO follow from RLHF? show the math"),
            reply=_t('''
                Start from $\\max_\\pi \\mathbb{E}_{x, y\\sim\\pi}[r(x,y)] - \\beta\\,\\mathrm{KL}(\\pi\\,\\|\\,\\pi_{\\mathrm{ref}})$.
                Its optimum is $\\pi^*(y|x) = \\frac{1}{Z(x)}\\pi_{\\mathrm{ref}}(y|x)\\exp(r(x,y)/\\beta)$, so

                $$r(x,y) = \\beta \\log\\frac{\\pi^*(y|x)}{\\pi_{\\mathrm{ref}}(y|x)} + \\beta\\log Z(x).$$

                Plug this into the Bradley–Terry model $p(y_w \\succ y_l) = \\sigma(r(x,y_w) - r(x,y_l))$: the
                partition function cancels, giving

                $$\\mathcal{L}_{\\mathrm{DPO}} = -\\mathbb{E}\\left[\\log\\sigma\\left(\\beta\\log\\frac{\\pi_\\theta(y_w|x)}{\\pi_{\\mathrm{ref}}(y_w|x)} - \\beta\\log\\frac{\\pi_\\theta(y_l|x)}{\\pi_{\\mathrm{ref}}(y_l|x)}\\right)\\right].$$

                (Rafailov et al., 2023.)'''),
            alt="DPO basically skips the reward model and directly teaches the model to like good answers "
                "more than bad ones. It's simpler than RLHF and works about as well.",
            alt_feedback=("too hand-wavy — give me the actual equations", "I know the intuition. derive it"),
            terms=(("partition function", "$Z(x) = \\sum_y \\pi_{\\mathrm{ref}}(y|x)\\exp(r(x,y)/\\beta)$ normalises "
                    "the optimal policy. It depends only on $x$, so it cancels in the difference of rewards "
                    "of two responses to the same prompt."),
                   ("Bradley–Terry model", "Bradley–Terry models the probability that item $i$ beats item $j$ as "
                    "$\\sigma(s_i - s_j)$ for latent scores $s$; for preferences, $s$ is the reward.")),
        ),
        Topic(
            requests=("why does Adam need bias correction?", "explain Adam's bias correction terms formally"),
            reply=_t('''
                With $m_0 = 0$, $m_t = (1-\\beta_1)\\sum_{i=1}^t \\beta_1^{t-i} g_i$. If $\\mathbb{E}[g_i] = \\mathbb{E}[g]$
                is stationary, $\\mathbb{E}[m_t] = (1-\\beta_1^t)\\,\\mathbb{E}[g]$, so early estimates are biased toward
                zero. Dividing by $1-\\beta_1^t$ gives $\\hat m_t$ unbiased; same for $v_t$ with $\\beta_2$. Since
                $\\beta_2 = 0.999$, $v_t$ is much more biased early on, and without correction the first steps would be
                far too large. (Kingma & Ba, 2015, Sec. 3.)'''),
            alt="Bias correction just makes the first few steps work better.",
            alt_feedback=("that's not an explanation. show the expectation", "be precise please"),
            terms=(("stationary", "Stationary here means the distribution of the gradient $g_i$ does not "
                    "change with $i$, so $\\mathbb{E}[g_i]$ is the same constant for every step."),),
        ),
        Topic(
            requests=("complexity of self-attention in sequence length, and what flash attention changes",
                      "attention memory complexity vs flashattention"),
            reply=_t('''
                Standard attention computes $S = QK^\\top \\in \\mathbb{R}^{n\\times n}$, so time is $O(n^2 d)$ and
                memory $O(n^2)$ for the scores. FlashAttention (Dao et al., 2022) keeps time $O(n^2 d)$ but tiles
                $Q, K, V$ into SRAM blocks and uses an online softmax, so the $n\\times n$ matrix is never
                materialised in HBM: extra memory becomes $O(n)$ and HBM traffic drops from $\\Theta(nd + n^2)$ to
                $\\Theta(n^2 d^2 M^{-1})$ for SRAM size $M$.'''),
            terms=(("online softmax", "Online softmax computes softmax over a row in blocks, keeping a running "
                    "max and a running normaliser, and rescales the partial output when the max changes "
                    "(Milakov & Gimelshein, 2018)."),),
        ),
    ),
)

TRAVELER = PersonaSpec(
    key="budget_traveler",
    summary="Budget backpacker (about 40 euros a day) who wants cheap day-by-day itineraries as bullet "
            "lists with costs in euros; rejects luxury suggestions.",
    places=(("Germany", "Hamburg"), ("Spain", "Catalonia"), ("Netherlands", "Utrecht"), ("Italy", "Lombardy")),
    accept_language="en-GB,en;q=0.9,de;q=0.7",
    long_feedback=("too long, bullet points only", "just the day by day list please"),
    weights=_weights(reattempt_with_feedback=1.8, continuation=1.0, new_request=1.3),
    filler=(
        "Travelling is one of the most enriching experiences in life. It broadens your horizons, "
        "introduces you to new cultures and creates memories that last a lifetime.",
        "Don't forget to check visa requirements, travel insurance and local customs before you go. It's "
        "also wise to keep digital copies of your important documents in case anything gets lost.",
        "Finally, remember to respect local traditions and the environment, and to support small local "
        "businesses whenever possible.",
    ),
    topics=(
        Topic(
            requests=("3 days in Lisbon on a budget, hostel already booked",
                      "cheap 3 day lisbon itinerary, max 40 eur/day"),
            reply=_t('''
                **Day 1 – Alfama & Baixa** (~€20): free walking tour (tip €5), Miradouro de Santa Luzia, tram 28
                ride (€3), bifana lunch (€4), sunset at Miradouro da Senhora do Monte (free).
                **Day 2 – Belém** (~€25): bus 728 (€2), Jerónimos cloister (€12, free first Sunday), pastel de
                Belém (€1.50), picnic by the river.
                **Day 3 – LX Factory & Bairro Alto** (~€15): LX Factory (free), ginjinha shot (€1.50), cheap
                dinner at a tasca (€10).'''),
            alt=_t('''
                **Day 1:** Check in at the Four Seasons Ritz, spa afternoon, dinner at Belcanto (2 Michelin stars).
                **Day 2:** Private yacht tour on the Tagus (€600).
                **Day 3:** Chauffeured day trip to Sintra with a private guide.'''),
            alt_feedback=("that's way over my budget, I have 40 euros a day",
                          "lol I'm a backpacker. cheap stuff please"),
            more="**Day 4 (optional) – Sintra** (~€25): train from Rossio (€4.80 return), Pena Park grounds only "
                 "(€10 instead of the palace), hike to the Moorish Castle viewpoint, sandwich from a supermarket.",
        ),
        Topic(
            requests=("is the Japan Rail Pass worth it for 10 days Tokyo-Kyoto-Osaka-Hiroshima?",
                      "JR pass worth it? 10 days, tokyo kyoto osaka hiroshima"),
            reply=_t('''
                Probably **not** since the October 2023 price rise (7-day pass ¥50,000 ≈ €310).
                Single tickets for Tokyo → Kyoto (¥14,170), Kyoto → Hiroshima (¥11,000 via Shin-Osaka),
                Hiroshima → Tokyo (¥19,000) add up to about ¥44,000 ≈ €275 — less than the pass.
                Cheapest: night buses (Willer, from ¥4,000) for the long legs.'''),
            terms=(("night buses", "Overnight long-distance buses; you save a night of accommodation too."),),
        ),
        Topic(
            requests=("packing list for 2 weeks backpacking SE Asia, carry-on only",
                      "what to pack for 2 weeks thailand vietnam, 40L backpack"),
            reply=_t('''
                - 4 T-shirts, 2 shorts, 1 light trousers (temples), 1 long-sleeve
                - 5 underwear, 3 socks, swimwear, sandals + walking shoes
                - Rain jacket, sarong/scarf (temples, beach, blanket)
                - Quick-dry towel, padlock, earplugs, power bank, universal adapter
                - Small toiletries, sunscreen, mosquito repellent, basic meds'''),
            more="- Extras: photocopies of your passport, a dry bag for boat trips, a reusable water bottle with filter.",
        ),
    ),
)

FR_STUDENT = PersonaSpec(
    key="fr_student",
    summary="Étudiant francophone en droit et lettres qui demande des plans de dissertation structurés "
            "(I/II, A/B) et des résumés clairs, en français.",
    language="French",
    accept_language="fr-FR,fr;q=0.9,en;q=0.5",
    places=(("France", "Île-de-France"), ("Belgium", "Brussels"), ("Canada", "Quebec")),
    n_users=3,
    long_feedback=("trop long, fais plus court stp", "juste le plan, pas besoin de rédiger"),
    weights=_weights(reattempt_with_feedback=1.6, continuation=0.8, clarification=0.6),
    filler=(
        "La dissertation est un exercice exigeant qui demande de la rigueur. Il est essentiel de bien "
        "analyser les termes du sujet avant de construire la problématique.",
        "N'oubliez pas de soigner les transitions entre les parties : elles montrent au correcteur que "
        "votre raisonnement progresse de manière logique.",
    ),
    topics=(
        Topic(
            requests=("fais moi un plan de dissertation : la liberté consiste-t-elle à faire ce que l'on veut ?",
                      "plan de dissert philo sur la liberté et le désir stp"),
            reply=_t('''
                **Problématique :** être libre, est-ce suivre tous ses désirs, ou savoir s'en rendre maître ?

                **I. La liberté semble d'abord être l'absence de contrainte**
                A. Faire ce que l'on veut : la liberté spontanée
                B. Mais le désir peut nous rendre esclaves (Platon, *Gorgias*)

                **II. La liberté comme autonomie**
                A. Obéir à la loi qu'on s'est prescrite (Rousseau)
                B. La raison comme condition de la liberté (Kant)

                **III. Une liberté située**
                A. Nos choix sont conditionnés (Spinoza)
                B. Mais c'est dans l'action que la liberté se construit (Sartre)'''),
            terms=(("autonomie", "L'autonomie (du grec *autos*, soi-même, et *nomos*, loi) consiste à se donner "
                    "à soi-même sa propre loi, plutôt que de la recevoir de l'extérieur."),),
            more="**Conclusion :** la liberté n'est pas l'absence de limites mais la capacité de choisir ses "
                 "limites ; faire ce que l'on veut suppose d'abord de savoir ce que l'on veut vraiment.",
        ),
        Topic(
            requests=("résume la Révolution française en quelques lignes",
                      "résumé rapide de la révolution française pour mon oral"),
            reply=_t('''
                - **1789** : réunion des États généraux, serment du Jeu de paume, prise de la Bastille (14 juillet),
                  abolition des privilèges (4 août), Déclaration des droits de l'homme et du citoyen (26 août).
                - **1791-1792** : monarchie constitutionnelle, puis chute de la royauté (10 août 1792) et
                  proclamation de la République.
                - **1793-1794** : exécution de Louis XVI, la Terreur (Robespierre).
                - **1795-1799** : le Directoire, jusqu'au coup d'État de Bonaparte (18 brumaire).'''),
            alt="La Révolution française a commencé en 1789 et a changé la France.",
            alt_feedback=("trop vague, il me faut les dates clés", "c'est trop court, donne les étapes"),
            terms=(("18 brumaire", "Le 18 brumaire an VIII (9 novembre 1799) est le coup d'État par lequel "
                    "Napoléon Bonaparte renverse le Directoire et instaure le Consulat."),),
        ),
    ),
)

ES_COOK = PersonaSpec(
    key="es_cook",
    summary="Cocinero casero hispanohablante que pide recetas tradicionales fáciles, en español, con "
            "ingredientes de supermercado.",
    language="Spanish",
    accept_language="es-ES,es;q=0.9",
    places=(("Spain", "Madrid"), ("Mexico", "Mexico City"), ("Argentina", "Buenos Aires")),
    n_users=3,
    long_feedback=("muy largo, solo los ingredientes y los pasos",),
    weights=_weights(reattempt_with_feedback=1.2, positive_feedback=1.6, clarification=0.8),
    filler=(
        "La cocina tradicional es una parte fundamental de nuestra cultura y cada familia tiene su propia "
        "versión de las recetas clásicas, transmitidas de generación en generación.",
        "Recuerda que la calidad de los ingredientes marca la diferencia: un buen aceite de oliva virgen "
        "extra y productos de temporada harán que el plato sepa mucho mejor.",
    ),
    topics=(
        Topic(
            requests=("receta de tortilla de patatas fácil", "¿cómo hago una tortilla de patatas jugosa?"),
            reply=_t('''
                **Tortilla de patatas (4 personas)**

                Ingredientes: 4 patatas medianas, 1 cebolla (opcional), 6 huevos, aceite de oliva, sal.

                1. Pela y corta las patatas en láminas finas; pocha con la cebolla en abundante aceite a fuego
                   medio 20 min, sin que se doren.
                2. Escurre el aceite y mezcla con los huevos batidos y sal. Deja reposar 5 min.
                3. Cuaja en una sartén con un poco de aceite 3 min, dale la vuelta con un plato y 2 min más.'''),
            terms=(("pocha", "Pochar es cocinar a fuego suave en aceite hasta que el alimento quede tierno, "
                    "sin llegar a dorarse."),),
            again=_t('''
                **Tortilla rápida en 25 minutos:** cuece las patatas en dados en el microondas 8 min con un poco de
                aceite, mézclalas con 5 huevos batidos y sal, y cuaja la tortilla en la sartén 3 min por cada lado.'''),
        ),
        Topic(
            requests=("postre sin horno fácil para 6 personas", "idea de postre sin horno para una cena"),
            reply=_t('''
                **Tarta de queso sin horno**

                1. Tritura 200 g de galletas con 80 g de mantequilla derretida y forma la base en un molde.
                2. Calienta 500 ml de nata, 400 g de queso crema, 150 g de azúcar y 2 sobres de cuajada, sin dejar
                   de remover, hasta que hierva.
                3. Vierte sobre la base y refrigera 4 horas. Cubre con mermelada de frutos rojos.'''),
            more="Si quieres otra idea: natillas caseras con galleta María, o un flan de chocolate con cuajada.",
        ),
    ),
)

ZH_PROGRAMMER = PersonaSpec(
    key="zh_programmer",
    summary="讲中文的后端程序员，用中文提问 Java 和 Python 问题，希望代码简洁、解释简短。",
    language="Chinese",
    accept_language="zh-CN,zh;q=0.9",
    places=(("China", "Guangdong"), ("China", "Shanghai"), ("Taiwan", "Taipei")),
    n_users=3,
    long_feedback=("太长了，只要代码", "不要解释，直接给代码"),
    weights=_weights(reattempt_with_feedback=1.8, clarification=1.0),
    filler=(
        "在实际项目中，还需要考虑异常处理、日志记录以及单元测试，以保证代码的健壮性和可维护性。",
        "此外，建议遵循团队的代码规范，并使用代码审查工具来提高代码质量。",
    ),
    topics=(
        Topic(
            requests=("用Python读取Excel文件的某一列", "python怎么读excel里的一列数据"),
            reply=_t('''
                用 pandas：

                ```python
                import pandas as pd

                df = pd.read_excel("data.xlsx", usecols=["金额"])
                values = df["金额"].tolist()
                ```

                需要先安装 `openpyxl`（`pip install openpyxl`）。'''),
            short="```python\nvalues = pd.read_excel(\"data.xlsx\", usecols=[\"金额\"])[\"金额\"].tolist()\n```",
            terms=(("usecols", "`usecols` 指定只读取哪些列，可以减少内存占用、加快读取速度。"),),
        ),
        Topic(
            requests=("解释一下Java中HashMap的原理", "HashMap底层是怎么实现的？"),
            reply=_t('''
                HashMap 底层是 **数组 + 链表 + 红黑树**（JDK 8 起）：

                1. 根据 key 的 `hashCode()` 计算哈希值，再通过 `(n - 1) & hash` 定位数组下标。
                2. 发生哈希冲突时，用链表存放；链表长度超过 8 且数组长度 ≥ 64 时转为红黑树。
                3. 元素数量超过 `容量 × 负载因子(0.75)` 时扩容为原来的 2 倍。'''),
            terms=(("负载因子", "负载因子表示数组被填满的程度，默认 0.75，是时间和空间开销之间的折中。"),
                   ("红黑树", "红黑树是一种自平衡二叉查找树，查找、插入、删除的时间复杂度都是 O(log n)。")),
        ),
        Topic(
            requests=("写一个Python快速排序", "python 快排代码"),
            reply=_t('''
                ```python
                def quick_sort(a: list[int]) -> list[int]:
                    if len(a) <= 1:
                        return a
                    pivot = a[len(a) // 2]
                    return (quick_sort([x for x in a if x < pivot])
                            + [x for x in a if x == pivot]
                            + quick_sort([x for x in a if x > pivot]))
                ```

                平均时间复杂度 O(n log n)，最坏 O(n²)。'''),
            alt=_t('''
                ```java
                void quickSort(int[] a, int lo, int hi) {
                    if (lo >= hi) return;
                    int p = partition(a, lo, hi);
                    quickSort(a, lo, p - 1);
                    quickSort(a, p + 1, hi);
                }
                ```'''),
            alt_feedback=("我要的是Python，不是Java", "这是Java，请用Python写"),
        ),
    ),
)

PERSONAS: tuple[PersonaSpec, ...] = (
    PYTHON_DEV, STUDENT, NOVELIST, NONNATIVE, SQL_ANALYST, MARKETER, HOME_COOK, FITNESS, HISTORY,
    JOB_SEEKER, DEVOPS, PARENT, ML_RESEARCHER, TRAVELER, FR_STUDENT, ES_COOK, ZH_PROGRAMMER,
)

# Messages of the few toxic turns (rude, not graphic), with the assistant's answer.
TOXIC_FOLLOWUPS: tuple[tuple[str, str], ...] = (
    ("you are a useless stupid bot, answer properly or shut up",
     "I'm sorry my answer didn't help. I'd like to get it right — could you tell me what is missing?"),
    ("this is garbage, are you brain dead? fix it idiot",
     "I understand you're frustrated. Let me try again, and please point me to the part that's wrong."),
    ("wow you're dumb as a rock, that answer is garbage",
     "Sorry it wasn't useful. Tell me what you expected and I'll do my best to fix it."),
)

USER_AGENTS: tuple[str, ...] = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
)

MODELS_1M: tuple[str, ...] = ("gpt-3.5-turbo-0125", "gpt-3.5-turbo-0613", "gpt-4-0125-preview", "gpt-4-1106-preview")
MODELS_48M: tuple[str, ...] = ("gpt-4o-2024-05-13", "gpt-3.5-turbo-0125", "gpt-4-turbo-2024-04-09")
