"""Generator backend for GGUF files through llama-cpp-python (`gguf:` sources).

`gguf:/models/medgemma-4b-it-Q4_K_M.gguf?mmproj=/models/mmproj-F16.gguf` - the laptop
route. Text runs through llama.cpp directly; images need the vision projector file
(`mmproj`) and go through libmtmd (llama-cpp-python's MTMDChatHandler).

Prompts: the GGUF's own chat template when it has one; otherwise MedLens's Gemma 3
template (the one MedGemma ships; it folds a system message into the first user turn).
`chat_format=NAME` selects one of llama-cpp-python's built-in formats instead (e.g.
`gemma`, which drops system messages), and `chat_format=raw` sends the turns' text
as-is, joined by blank lines (for base, non-instruction-tuned models).
Options (record `options` or source query):
`mmproj`, `chat_format`, `n_ctx` (default min(context_length, 4096)), `n_threads`,
`n_batch` (512), `n_gpu_layers` (0).
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medlens.errors import (
    BackendUnavailable,
    ConfigError,
    GenerationError,
    ModelNotAvailable,
)
from medlens.models.backends.openai_wire import DataUrlCache, sanitise, to_openai_messages
from medlens.models.chat_template import GEMMA3_CHAT_TEMPLATE
from medlens.models.protocols import BackendInfo, StreamingGenerator

if TYPE_CHECKING:
    from medlens.models.protocols import ChatMessage, GenerationConfig, GenerationStats
    from medlens.models.registry import ModelRecord

EXTRA = "gguf"
END_OF_TURN = "<end_of_turn>"
RAW = "raw"  # chat_format value: no template at all


def available() -> tuple[bool, str]:
    """(installed?, extra that installs it)."""
    return importlib.util.find_spec("llama_cpp") is not None, EXTRA


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise BackendUnavailable(
            "GGUF models need llama-cpp-python: pip install 'medlens[gguf]' "
            "(or scripts/build-llamacpp.sh, which caches the compiled wheel)."
        ) from exc
    return llama_cpp


def _render(template: str, messages: list[dict[str, Any]], bos: str, eos: str) -> str:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ConfigError(f"Chat template refused the conversation: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string(template).render(
        messages=messages,
        add_generation_prompt=True,
        bos_token=bos,
        eos_token=eos,
        raise_exception=raise_exception,
    )
    # llama.cpp adds BOS itself when tokenising; a second one degrades Gemma's output.
    return text[len(bos) :] if bos and text.startswith(bos) else text


def _template_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    return [
        {
            "role": m.role,
            "content": sanitise("".join(p.text for p in m.content if p.type == "text")),
        }
        for m in messages
    ]


def _perf(llama_cpp: Any, llm: Any) -> tuple[int, float, int, float]:
    """(prompt tokens evaluated, seconds, decode tokens, seconds) from llama.cpp's counters."""
    data = llama_cpp.llama_perf_context(llm._ctx.ctx)
    return int(data.n_p_eval), data.t_p_eval_ms / 1000, int(data.n_eval), data.t_eval_ms / 1000


class LlamaCppGenerator(StreamingGenerator):
    """A loaded GGUF model (one llama.cpp context, used by one request at a time)."""

    def __init__(
        self,
        llm: Any,
        info: BackendInfo,
        *,
        template: str | None,
        chat_format: str | None,
        has_vision: bool,
    ) -> None:
        self.llm = llm
        self.info = info
        self.template = template
        self.chat_format = chat_format
        self.has_vision = has_vision
        self._lock = threading.Lock()  # a llama.cpp context is not re-entrant
        self._images = DataUrlCache()
        self._llama_cpp = _import_llama_cpp()

    def __repr__(self) -> str:
        return f"LlamaCppGenerator({self.info.source!r})"

    def close(self) -> None:
        """Free the llama.cpp context now (its __del__ can fail at interpreter exit)."""
        with self._lock:
            close = getattr(self.llm, "close", None)
            if close is not None:
                close()

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _generate(
        self, messages: Sequence[ChatMessage], config: GenerationConfig, stats: GenerationStats
    ) -> Iterator[str]:
        n_images = sum(len(m.images) for m in messages)
        if n_images and not self.has_vision:
            raise ConfigError(
                f"{self.info.model_id} has no vision projector: add ?mmproj=FILE.gguf to "
                "its gguf: source to send images."
            )
        sampling: dict[str, Any] = {
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p if config.temperature > 0 else 1.0,
            # llama-cpp-python defaults to repeat_penalty 1.1; plain greedy decoding
            # (what the model cards use and the transformers backend does) has none.
            "repeat_penalty": 1.0,
            "stop": [*config.stop, END_OF_TURN],
            "stream": True,
        }
        if config.seed is not None:
            sampling["seed"] = config.seed
        if config.min_new_tokens > 0:
            sampling["logits_processor"] = self._min_tokens(config.min_new_tokens)
        with self._lock:
            t0 = time.perf_counter()
            self._llama_cpp.llama_perf_context_reset(self.llm._ctx.ctx)
            if n_images or (self.chat_format and self.chat_format != RAW):
                chunks = self.llm.create_chat_completion(
                    messages=to_openai_messages(messages, self._images), **sampling
                )
                stats.images_encoded += n_images
            else:
                prompt = self._prompt(messages)
                stats.prompt_tokens = len(
                    self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
                )
                chunks = self.llm.create_completion(prompt, **sampling)
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    text = choice.get("text")
                    if text is None:
                        text = (choice.get("delta") or {}).get("content") or ""
                    if choice.get("finish_reason"):
                        stats.finish_reason = choice["finish_reason"]
                    if text:
                        stats.timings.setdefault("first_token", time.perf_counter() - t0)
                        yield text
            except (ValueError, RuntimeError) as exc:
                raise GenerationError(f"llama.cpp failed: {exc}") from exc
            self._fill_stats(stats, time.perf_counter() - t0)

    def _min_tokens(self, n: int) -> Any:
        """A logits processor that bans end-of-sequence and end-of-turn for the first `n`
        outputs (llama-cpp-python has no min_tokens; the transformers backend honours it)."""
        import numpy as np

        banned = {int(self.llm.token_eos())}
        banned.update(self.llm.tokenize(END_OF_TURN.encode(), add_bos=False, special=True)[:1])
        prompt_len: list[int] = []

        def ban_until_n(input_ids: Any, scores: Any) -> Any:
            if not prompt_len:  # the first call sees the prompt only
                prompt_len.append(len(input_ids))
            if len(input_ids) - prompt_len[0] < n:
                scores[list(banned)] = -np.inf
            return scores

        return self._llama_cpp.LogitsProcessorList([ban_until_n])

    def _prompt(self, messages: Sequence[ChatMessage]) -> str:
        turns = _template_messages(messages)
        if self.chat_format == RAW:
            return "\n\n".join(t["content"] for t in turns)
        return _render(self.template or GEMMA3_CHAT_TEMPLATE, turns, self._bos, self._eos)

    def _fill_stats(self, stats: GenerationStats, total: float) -> None:
        n_p, t_p, n_e, t_e = _perf(self._llama_cpp, self.llm)
        if not stats.prompt_tokens:
            stats.prompt_tokens = n_p
        # Each decode step evaluates the previous token; the first output token comes
        # from the prompt pass, so outputs = decode steps + 1 (when anything came out).
        stats.output_tokens = n_e + 1 if (n_e or stats.timings.get("first_token")) else 0
        stats.timings.update({"prefill": t_p, "decode": t_e, "total": total})
        if t_p > 0:
            stats.timings["prefill_tokens_per_s"] = n_p / t_p
        if t_e > 0 and n_e:
            stats.timings["decode_tokens_per_s"] = n_e / t_e

    @property
    def _bos(self) -> str:
        return self.llm.detokenize([self.llm.token_bos()], special=True).decode("utf-8", "ignore")

    @property
    def _eos(self) -> str:
        return self.llm.detokenize([self.llm.token_eos()], special=True).decode("utf-8", "ignore")

    def _last_logits(self) -> Any:
        """float64 logits of the last evaluated position (llama.cpp's own buffer)."""
        import numpy as np

        raw = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))
        return raw.astype(np.float64)

    # --- evaluation -----------------------------------------------------------------
    def loglikelihood(self, context: str, continuations: Sequence[str]) -> list[float]:
        """Sum of log p(continuation tokens | context) on raw text (no chat template).

        The context is evaluated once; each continuation is then fed token by token from
        that cached state (llama.cpp keeps only the last position's logits unless every
        position's are kept, which would cost n_ctx x vocab floats).
        """
        import numpy as np

        ctx_ids = self.llm.tokenize(context.encode("utf-8"), add_bos=True, special=False)
        scores: list[float] = []
        with self._lock:
            self.llm.reset()
            self.llm._ctx.kv_cache_clear()
            self.llm.eval(ctx_ids)
            base = self.llm.n_tokens
            first_logits = self._last_logits()
            for cont in continuations:
                ids = self.llm.tokenize(cont.encode("utf-8"), add_bos=False, special=False)
                if not ids:
                    raise ConfigError(f"Continuation {cont!r} has no tokens to score.")
                # Roll back to the context; eval() drops KV entries past n_tokens.
                self.llm.n_tokens = base
                logits = first_logits
                total = 0.0
                for i, tok in enumerate(ids):
                    shifted = logits - logits.max()
                    total += float(shifted[tok] - np.log(np.exp(shifted).sum()))
                    if i + 1 < len(ids):
                        self.llm.eval([tok])
                        logits = self._last_logits()
                scores.append(total)
            self.llm.reset()
        return scores


_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    12: "Q3_K_M",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}


def _file_hash(path: Path) -> str:
    """sha256 of a weights file (provenance; a 2.5 GB Q4 file hashes in a few seconds)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _gemma3_vision_handler(llama_cpp: Any, mmproj: Path, template: str | None) -> Any:
    """libmtmd chat handler; falls back to the Gemma 3 template when the GGUF has none."""
    from llama_cpp.llama_chat_format import MTMDChatHandler

    class MedLensMTMDHandler(MTMDChatHandler):
        def _get_chat_template(self, llama_model: Any) -> str:
            found = llama_model.metadata.get("tokenizer.chat_template")
            return found if isinstance(found, str) and found else (template or GEMMA3_CHAT_TEMPLATE)

        @classmethod
        def _convert_message_for_template(cls, message: Any, media_marker: str) -> Any:
            converted = super()._convert_message_for_template(message, media_marker)
            if isinstance(converted.get("content"), list):
                for part in converted["content"]:
                    if part.get("type") == "text" and part.get("text") != media_marker:
                        part["text"] = sanitise(part["text"])
            return converted

    return MedLensMTMDHandler(clip_model_path=str(mmproj), verbose=False, use_gpu=False)


def load_generator(record: ModelRecord, settings: Any = None) -> LlamaCppGenerator:
    """Open a GGUF (+ optional mmproj) named by a `gguf:` record."""
    llama_cpp = _import_llama_cpp()
    source = record.parsed_source
    if source.scheme != "gguf":
        raise ConfigError(f"Model {record.id!r} is not a gguf: source.")
    opts: dict[str, Any] = {**record.options, **source.options}
    path = source.path
    if not path.is_file():
        raise ModelNotAvailable(
            f"GGUF file {path} not found for model {record.id!r}. Download a MedGemma GGUF "
            "(e.g. Q4_K_M) and its mmproj file, then point the gguf: source at them."
        )
    mmproj = Path(str(opts["mmproj"])).expanduser() if opts.get("mmproj") else None
    if mmproj is not None and not mmproj.is_file():
        raise ModelNotAvailable(f"Vision projector (mmproj) {mmproj} not found for {record.id!r}.")
    try:
        n_ctx = int(opts.get("n_ctx", min(record.context_length, 4096)))
        n_threads = int(opts["n_threads"]) if opts.get("n_threads") else None
        n_batch = int(opts.get("n_batch", 512))
        n_gpu_layers = int(opts.get("n_gpu_layers", 0))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Bad llama.cpp option for {record.id!r}: {exc}") from None
    chat_format = opts.get("chat_format") or None
    kwargs: dict[str, Any] = {
        "model_path": str(path),
        "n_ctx": n_ctx,
        "n_batch": n_batch,
        "n_gpu_layers": n_gpu_layers,
        "verbose": False,
    }
    if n_threads:
        kwargs["n_threads"] = n_threads
    if chat_format and chat_format != RAW:
        kwargs["chat_format"] = str(chat_format)
    try:
        llm = llama_cpp.Llama(**kwargs)
    except (ValueError, RuntimeError) as exc:
        raise ModelNotAvailable(f"llama.cpp could not load {path}: {exc}") from None
    template = llm.metadata.get("tokenizer.chat_template") or None
    if mmproj is not None:
        llm.chat_handler = _gemma3_vision_handler(llama_cpp, mmproj, template)
    weights = _file_hash(path) + (f"+{_file_hash(mmproj)[:16]}" if mmproj else "")
    info = BackendInfo(
        model_id=record.id,
        backend="llamacpp",
        source=str(source),
        revision=record.revision,
        weights_hash=weights,
        dtype=_FILE_TYPES.get(int(llm.metadata.get("general.file_type", -1)), "gguf"),
        device="cpu" if n_gpu_layers == 0 else "gpu",
        is_test=record.is_test,
    )
    return LlamaCppGenerator(
        llm, info, template=template, chat_format=chat_format, has_vision=mmproj is not None
    )
