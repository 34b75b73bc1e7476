"""Build the tiny offline chat model used by tests, the demo and CPU benchmarks.

    python -m rlhi_hpc.tools.tiny_model out=.cache/tiny-model [hidden=64 layers=2 heads=2 kv_heads=2
                                        intermediate=0 vocab=3000 seed=0 arch=llama kind=causal]
    python -m rlhi_hpc.tools.tiny_model out=.cache/tiny-rm kind=reward

``kind=reward`` builds the tiny *reward* model instead: the same tokenizer and body shape with a
sequence-classification head (``LlamaForSequenceClassification``, ``num_labels=1``), random init.

Nothing is downloaded: a byte-level BPE tokenizer is trained on the spot (``tokenizers``) on a
built-in, deterministic English corpus, and a Llama-shaped causal LM (head_dim >= 32, untied
embeddings, 4096 positions) is randomly initialised with a fixed seed. The result is a regular
Hugging Face model folder (safetensors, fast tokenizer with a ChatML chat template, generation
config) that both ``transformers.AutoModelForCausalLM.from_pretrained`` and vLLM load.

The build is atomic (a temporary folder next to ``out`` is renamed into place) and idempotent
(an existing complete folder built with the same settings is kept).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END)
SPEC_FILE = "tiny_model.json"
REQUIRED_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                  "tokenizer_config.json", SPEC_FILE)
CORPUS_LINES = 6000

CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

# --------------------------------------------------------------------------------------------
# Deterministic corpus
# --------------------------------------------------------------------------------------------

_SUBJECTS = ["the user", "my friend", "our team", "the assistant", "a student", "the teacher", "my manager",
             "the customer", "this function", "the model", "the report", "a researcher", "the cluster",
             "my code", "the answer", "your reply", "the story", "the program", "a developer", "the data"]
_VERBS = ["explains", "writes", "needs", "fixes", "reads", "summarizes", "translates", "checks", "improves",
          "describes", "compares", "returns", "prints", "sorts", "loads", "trains", "answers", "asks for"]
_OBJECTS = ["a short poem", "the Python code", "an email to my boss", "the main idea", "a list of steps",
            "the error message", "a recipe for dinner", "the history of Rome", "a cover letter",
            "the SQL query", "a JavaScript function", "the meeting notes", "a product description",
            "the math problem", "a story about a dragon", "the travel plan", "the essay", "a haiku",
            "the bug in line 12", "a table of results", "the summary", "three examples"]
_ADJECTIVES = ["short", "long", "formal", "friendly", "detailed", "simple", "clear", "funny", "polite",
               "professional", "concise", "creative", "correct", "wrong", "better", "shorter", "longer"]
_REQUESTS = ["Can you write {o}?", "Please help me with {o}.", "Write {o} in a {a} style.",
             "I need {o} for tomorrow.", "Explain {o} like I am five.", "Translate {o} into French.",
             "How do I improve {o}?", "Give me {o}, but keep it {a}.", "What is wrong with {o}?",
             "Summarize {o} in two sentences."]
_FEEDBACK = ["That is too {a}, make it {a2}.", "No, I asked for {o}, not {o2}.", "This is wrong. Try again.",
             "Thanks, that was great!", "Can you make it more {a}?", "You forgot {o}.",
             "I don't like it. Please rewrite it.", "Perfect, now do the same for {o}.",
             "Why did you use {o}? I wanted {o2}.", "Good, but please be more {a}."]
_REPLIES = ["Sure! Here is {o}.", "Of course. {S} {v} {o}.", "Here is a {a} version: {S} {v} {o}.",
            "I apologize for the confusion. Here is {o} again, now {a}.", "Certainly. First, {s} {v} {o}. "
            "Then {s2} {v2} {o2}.", "Great question! {S} {v} {o} because it is {a}."]
_CODE = ["def {f}(x):\n    return x * {n}\n", "for i in range({n}):\n    print(i, {f}(i))\n",
         "import numpy as np\narr = np.zeros(({n}, {n}))\n", "SELECT name, count(*) FROM users GROUP BY name;",
         "const {f} = (a, b) => a + b + {n};", "if err != nil {{\n    return err\n}}",
         "class {F}:\n    def __init__(self):\n        self.value = {n}\n"]
_NAMES = ["compute", "parse", "load_data", "train_step", "helper", "score", "main", "render", "split"]
_WORDS = (
    "about above across action actually add after again against age ago agree air all allow almost alone along "
    "already also although always among amount analysis and animal another answer any anyone anything appear "
    "apply approach area argue arm around arrive art article artist ask assume attack attention audience author "
    "available avoid away baby back bad bank base beautiful because become bed before begin behavior behind "
    "believe benefit best better between beyond big bill billion bit black blood blue board body book born both "
    "box boy break bring brother budget build building business but buy call camera campaign can cancer "
    "candidate capital car card care career carry case catch cause cell center central century certain chair "
    "challenge chance change character charge check child choice choose church citizen city civil claim class "
    "clear clearly close coach cold collection college color come commercial common community company compare "
    "computer concern condition conference consider consumer contain continue control cost could country couple "
    "course court cover create crime cultural culture cup current customer cut dark daughter dead deal death "
    "debate decade decide decision deep defense degree democratic describe design despite detail determine "
    "develop difference different difficult dinner direction director discover discuss disease doctor dog door "
    "down draw dream drive drop drug during each early east easy eat economic economy edge education effect "
    "effort eight either election else employee end energy enjoy enough enter entire environment especially "
    "establish even evening event ever every everybody everyone everything evidence exactly example executive "
    "exist expect experience expert explain eye face fact factor fail fall family far fast father fear federal "
    "feel feeling few field fight figure fill film final finally financial find fine finger finish fire firm "
    "first fish five floor fly focus follow food foot force foreign forget form former forward four free friend "
    "front full fund future game garden gas general generation girl give glass goal good government great green "
    "ground group grow growth guess gun guy hair half hand hang happen happy hard have head health hear heart "
    "heat heavy help here herself high himself history hold home hope hospital hot hotel hour house however huge "
    "human hundred husband idea identify image imagine impact important improve include including increase "
    "indeed indicate individual industry information inside instead institution interest interesting "
    "international interview into investment involve issue item itself job join just keep key kid kill kind "
    "kitchen know knowledge land language large last late later laugh law lawyer lay lead leader learn least "
    "leave left leg legal less letter level lie life light like likely line list listen little live local long "
    "look lose loss lot love low machine magazine main maintain major majority make manage management manager "
    "many market marriage material matter maybe mean measure media medical meet meeting member memory mention "
    "message method middle might military million mind minute miss mission model modern moment money month more "
    "morning most mother mouth move movement movie much music must myself name nation national natural nature "
    "near nearly necessary need network never news newspaper next nice night none north note nothing notice now "
    "number occur off offer office officer official often oil old once one only onto open operation opportunity "
    "option order organization other others outside over own owner page pain painting paper parent part "
    "participant particular particularly partner party pass past patient pattern pay peace people per perform "
    "performance perhaps period person personal phone physical pick picture piece place plan plant play player "
    "point police policy political politics poor popular population position positive possible power practice "
    "prepare present president pressure pretty prevent price private probably problem process produce product "
    "production professional professor program project property protect prove provide public pull purpose push "
    "quality question quickly quite race radio raise range rate rather reach read ready real reality realize "
    "really reason receive recent recently recognize record red reduce reflect region relate relationship "
    "religious remain remember remove report represent require research resource respond response rest result "
    "return reveal rich right rise risk road rock role room rule run safe same save say scene school science "
    "scientist score sea season seat second section security see seek seem sell send senior sense series serious "
    "serve service set seven several shake share she shoot short shot should shoulder show side sign significant "
    "similar simple simply since sing single sister sit site situation six size skill skin small smile social "
    "society soldier some somebody someone something sometimes son song soon sort sound source south southern "
    "space speak special specific speech spend sport spring staff stage stand standard star start state "
    "statement station stay step still stock stop store story strategy street strong structure student study "
    "stuff style subject success successful such suddenly suffer suggest summer support sure surface system "
    "table take talk task tax teach teacher team technology television tell ten tend term test than thank that "
    "their them themselves then theory there these they thing think third this those though thought thousand "
    "threat three through throughout throw thus time today together tonight too top total tough toward town "
    "trade traditional training travel treat treatment tree trial trip trouble true truth try turn type under "
    "understand unit until upon usually value various very victim view violence visit voice vote wait walk wall "
    "want war watch water way weapon wear week weight well west western what whatever when where whether which "
    "while white whole whom whose why wide wife will win wind window wish with within without woman wonder word "
    "work worker world worry would write writer wrong yard yeah year yes yet young yourself"
).split()
_EXTRA = ["Café, naïve, façade, über, São Paulo, 東京, Zürich.", "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024.",
          "Punctuation: ( ) [ ] { } < > ; : , . ! ? ' \" - _ = + * / \\ | @ # $ % ^ & ~ `"]


def _fill(template: str, rng: random.Random) -> str:
    subject, subject2 = rng.choice(_SUBJECTS), rng.choice(_SUBJECTS)
    name = rng.choice(_NAMES)
    return template.format(
        o=rng.choice(_OBJECTS), o2=rng.choice(_OBJECTS), a=rng.choice(_ADJECTIVES), a2=rng.choice(_ADJECTIVES),
        s=subject, s2=subject2, S=subject[0].upper() + subject[1:], v=rng.choice(_VERBS),
        v2=rng.choice(_VERBS), f=name, F=name.title().replace("_", ""), n=rng.randint(0, 999),
    )


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 18))]
    words[0] = words[0].capitalize()
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), str(rng.randint(0, 99999)))
    return " ".join(words) + rng.choice([".", ".", "?", "!", ",", ":"])


def corpus_lines(n_lines: int = CORPUS_LINES, seed: int = 1234) -> Iterator[str]:
    """A deterministic English corpus: requests, feedback, replies, code and ChatML turns."""
    rng = random.Random(seed)
    yield from _EXTRA
    pools = (_REQUESTS, _FEEDBACK, _REPLIES, _CODE)
    for i in range(n_lines):
        if i % 2:
            text = _sentence(rng)
        else:
            text = _fill(rng.choice(pools[(i // 2) % len(pools)]), rng)
        if i % 7 == 0:
            role = ("system", "user", "assistant")[i % 3]
            text = f"{IM_START}{role}\n{text}{IM_END}\n"
        yield text


# --------------------------------------------------------------------------------------------
# Tokenizer and model
# --------------------------------------------------------------------------------------------


def train_tokenizer(vocab_size: int) -> Any:
    """Train a byte-level BPE on the built-in corpus; return a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2,
    )
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token=IM_END, pad_token=END_OF_TEXT, unk_token=None,
        chat_template=CHATML_TEMPLATE,
        model_max_length=4096, padding_side="left", clean_up_tokenization_spaces=False,
    )


def _model_config(spec: dict[str, Any], tokenizer: Any) -> Any:
    from transformers import LlamaConfig

    if spec["arch"] != "llama":
        raise ValueError(f"arch={spec['arch']!r} is not supported; use arch=llama")
    hidden, heads, kv_heads = spec["hidden"], spec["heads"], spec["kv_heads"]
    if hidden % heads or heads % kv_heads or hidden // heads < 32:
        raise ValueError(f"hidden={hidden} heads={heads} kv_heads={kv_heads}: need heads | hidden, "
                         "kv_heads | heads and head_dim = hidden/heads >= 32 (vLLM requires it)")
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=spec["intermediate"],
        num_hidden_layers=spec["layers"], num_attention_heads=heads, num_key_value_heads=kv_heads,
        head_dim=hidden // heads, max_position_embeddings=4096, tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids(END_OF_TEXT),
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(END_OF_TEXT),
        rms_norm_eps=1e-6, initializer_range=0.02,
    )


def _write_model(tmp: Path, spec: dict[str, Any]) -> None:
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM, LlamaForSequenceClassification

    tokenizer = train_tokenizer(spec["vocab_size"])
    config = _model_config(spec, tokenizer)
    torch.manual_seed(spec["seed"])
    if spec.get("kind") == "reward":
        config.num_labels = 1
        model = LlamaForSequenceClassification(config).to(torch.float32).eval()
    else:
        model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(tmp, safe_serialization=True)
    if not (tmp / "generation_config.json").exists():  # a classifier does not save one; keep the layout uniform
        model.generation_config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    _add_compat_keys(tmp)
    (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    tmp.chmod(0o755)
    for path in tmp.iterdir():
        path.chmod(0o644)


def _add_compat_keys(folder: Path) -> None:
    """Also write the key names older transformers releases (the vLLM environment) read."""
    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text())
    rope = cfg.get("rope_parameters") or {}
    cfg.setdefault("rope_theta", rope.get("rope_theta", 10000.0))
    cfg.setdefault("torch_dtype", cfg.get("dtype", "float32"))
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    tok_path = folder / "tokenizer_config.json"
    tok_cfg = json.loads(tok_path.read_text())
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_cfg.pop("extra_special_tokens", None)  # a list here breaks transformers 4.x, which expects a dict
    tok_cfg.setdefault("chat_template", CHATML_TEMPLATE)
    tok_path.write_text(json.dumps(tok_cfg, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------
# Atomic, idempotent build
# --------------------------------------------------------------------------------------------


def _spec(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int | None, vocab_size: int,
          seed: int, arch: str) -> dict[str, Any]:
    return {"arch": arch, "hidden": hidden, "layers": layers, "heads": heads, "kv_heads": kv_heads,
            "intermediate": intermediate or 4 * hidden, "vocab_size": vocab_size, "seed": seed,
            "corpus_lines": CORPUS_LINES}


def is_complete(out: Path, spec: dict[str, Any] | None = None) -> bool:
    """True when `out` holds a finished build (with the same settings, when `spec` is given)."""
    if not all((out / name).is_file() for name in REQUIRED_FILES):
        return False
    if spec is None:
        return True
    try:
        return json.loads((out / SPEC_FILE).read_text()) == spec
    except (OSError, ValueError):
        return False


def build_tiny_model(out: Path, *, hidden: int = 64, layers: int = 2, heads: int = 2, kv_heads: int = 2,
                     intermediate: int | None = None, vocab_size: int = 3000, seed: int = 0,
                     arch: str = "llama", kind: str = "causal") -> Path:
    """Build the tiny model into `out` (atomically) unless an identical build is already there."""
    out = Path(out).resolve()
    spec = _spec(hidden, layers, heads, kv_heads, intermediate, vocab_size, seed, arch)
    if kind != "causal":
        if kind != "reward":
            raise ValueError(f"kind={kind!r} is not supported; use kind=causal or kind=reward")
        spec["kind"] = kind
    if is_complete(out, spec):
        log.info("event=tiny_model_exists out=%s", out)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    start = time.perf_counter()
    try:
        _write_model(tmp, spec)
        _replace_dir(tmp, out, spec)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("event=tiny_model_built out=%s seconds=%.1f spec=%s", out, time.perf_counter() - start,
             json.dumps(spec, sort_keys=True))
    return out


def build_tiny_reward_model(out: Path, **kwargs: Any) -> Path:
    """Build the tiny reward model (``kind=reward``, see the module docstring) into `out`."""
    return build_tiny_model(out, kind="reward", **kwargs)


def _replace_dir(tmp: Path, out: Path, spec: dict[str, Any]) -> None:
    """Move the finished build into place; a concurrent identical build that won the race is kept."""
    if out.exists():
        if is_complete(out, spec):
            return
        stale = out.with_name(f".{out.name}.stale-{os.getpid()}")
        os.replace(out, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.replace(tmp, out)
    except OSError:
        if not is_complete(out, spec):
            raise


def _parse_args(argv: Sequence[str]) -> dict[str, Any]:
    ints = {"hidden", "layers", "heads", "kv_heads", "intermediate", "vocab", "seed"}
    known = ints | {"out", "arch", "kind"}
    args: dict[str, Any] = {}
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"bad argument {item!r}; expected key=value with key in {sorted(known)}")
        args[key] = int(value) if key in ints else value
    if "out" not in args:
        raise SystemExit("missing out=<dir>, e.g. python -m rlhi_hpc.tools.tiny_model out=.cache/tiny-model")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.pop("out"))
    if "vocab" in args:
        args["vocab_size"] = args.pop("vocab")
    if args.get("intermediate") == 0:
        args["intermediate"] = None
    path = build_tiny_model(out, **args)
    print(f"tiny model ready at {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
