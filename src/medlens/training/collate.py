"""Examples → model batches, built the way inference builds its prompts.

- Prompt: the same chat template and image expansion as
  `TransformersGenerator.build_prompt` (tests compare the ids), the user turn laid out in
  the base record's prompt format (MedGemma 1.5: image first; v1: text then image), and
  images through `medlens.imaging.ingest` + `preprocess` with the record's spec.
- Labels: the answer and its `<end_of_turn>` only; prompt, image tokens and padding are
  -100 (pitfall 2). The template writes `<bos>` and tokenising with
  `add_special_tokens=False` adds no second one (pitfall 1). `token_type_ids` mark image
  tokens, which Gemma 3 needs for their bidirectional attention (pitfall 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medlens.errors import ConfigError
from medlens.training.data import Example

IGNORE = -100


def user_content(prompt: str, has_image: bool, prompt_format: str) -> list[dict[str, Any]]:
    """The user turn as `tasks.prompting.build_messages` lays it out for this format."""
    text = {"type": "text", "text": prompt}
    if not has_image:
        return [text]
    image = {"type": "image"}
    return [image, text] if prompt_format == "medgemma-1.5" else [text, image]


@dataclass
class Collator:
    """Callable batch builder for `Trainer` (rows are `{"idx": i}` into `examples`)."""

    processor: Any
    examples: list[Example]
    prompt_format: str
    preprocess_spec: Any | None
    max_length: int = 1024
    _pixels: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.multimodal = hasattr(self.processor, "image_processor")
        self.end_of_turn = self.tokenizer.convert_tokens_to_ids("<end_of_turn>")
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            raise ConfigError("The tokenizer has no pad token; it cannot batch.")

    # --- one example ---------------------------------------------------------
    def prompt_ids(self, ex: Example) -> list[int]:
        if ex.image and not self.multimodal:
            raise ConfigError("This base model is text-only; the data has images.")
        chat = [
            {
                "role": "user",
                "content": user_content(ex.prompt or "", bool(ex.image), self.prompt_format),
            }
        ]
        text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        if ex.image:
            text = text.replace(self.processor.boi_token, self.processor.full_image_sequence)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, ex: Example) -> tuple[list[int], list[int]]:
        """(input ids, labels) for one example."""
        if ex.prompt is None:  # language modelling: every token after BOS is a target
            ids = [self.tokenizer.bos_token_id]
            ids += self.tokenizer(ex.answer, add_special_tokens=False)["input_ids"]
            ids.append(self.tokenizer.eos_token_id)
            return ids, [IGNORE, *ids[1:]]
        prompt = self.prompt_ids(ex)
        answer = self.tokenizer(ex.answer, add_special_tokens=False)["input_ids"]
        answer = [*answer, self.end_of_turn]
        return prompt + answer, [IGNORE] * len(prompt) + answer

    def pixel_values(self, image_path: str) -> Any:
        cached = self._pixels.get(image_path)
        if cached is not None:
            return cached
        from medlens.imaging.ingest import ingest
        from medlens.imaging.preprocess import preprocess

        image = ingest(image_path).image
        if self.preprocess_spec is not None:
            image = preprocess(image, self.preprocess_spec)
        out = self.processor.image_processor(images=[image.convert("RGB")], return_tensors="pt")
        self._pixels[image_path] = out["pixel_values"][0]
        return self._pixels[image_path]

    # --- a batch ---------------------------------------------------------------
    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        exs = [self.examples[int(r["idx"])] for r in rows]
        encoded = [self.encode(ex) for ex in exs]
        longest = max(len(ids) for ids, _ in encoded)
        if longest > self.max_length:
            raise ConfigError(
                f"An example has {longest} tokens, more than --max-length {self.max_length} "
                "(truncating would cut the answer or an image block)."
            )
        ids = torch.full((len(exs), longest), self.pad_id, dtype=torch.long)
        labels = torch.full((len(exs), longest), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(exs), longest), dtype=torch.long)
        for row, (seq, lab) in enumerate(encoded):  # right padding for training
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, : len(lab)] = torch.tensor(lab)
            mask[row, : len(seq)] = 1
        batch: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if self.multimodal:
            image_id = self.tokenizer.convert_tokens_to_ids("<image_soft_token>")
            batch["token_type_ids"] = (ids == image_id).long()
            with_images = [ex.image for ex in exs if ex.image]
            if with_images:
                batch["pixel_values"] = torch.stack([self.pixel_values(p) for p in with_images])
        return batch
