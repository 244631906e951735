"""Fine-tuning strategies: what part of a ViT trains (full, head, last_blocks, LoRA), and the plain
model to save afterwards."""

from __future__ import annotations

from transformers import ViTForImageClassification

from vitinspect.core.errors import VitinspectError

# finetune.lora.targets may use the classic ViT names; transformers 5 calls them *_proj.
LORA_ALIASES = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "attention_output": "o_proj"}


def apply_strategy(model: ViTForImageClassification, finetune_params):
    """Freeze or wrap ``model`` for ``finetune.strategy``; returns the model to train.

    full: everything; head: the classifier only; last_blocks: the last N encoder
    blocks and the classifier; lora: PEFT LoRA on the targets plus the classifier.
    """
    f = finetune_params
    if f.strategy == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if f.strategy == "lora":
        from peft import LoraConfig, get_peft_model

        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        targets = [t if t in names else LORA_ALIASES.get(t, t) for t in f.lora.targets]
        cfg = LoraConfig(r=f.lora.rank, lora_alpha=f.lora.alpha, lora_dropout=f.lora.dropout,
                         target_modules=targets, modules_to_save=["classifier"])
        try:
            return get_peft_model(model, cfg)
        except ValueError as exc:
            raise VitinspectError(f"params.yaml: finetune.lora.targets {list(f.lora.targets)} match no module: {exc}") from None
    n_layers = model.config.num_hidden_layers
    if f.strategy == "last_blocks" and f.last_blocks > n_layers:
        raise VitinspectError(f"params.yaml: finetune.last_blocks ({f.last_blocks}) exceeds the model's {n_layers} blocks")
    keep = ("classifier.",)
    if f.strategy == "last_blocks":
        keep += tuple(f"vit.layers.{i}." for i in range(n_layers - f.last_blocks, n_layers))
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(keep))
    return model


def plain_model(model) -> ViTForImageClassification:
    """The plain ViT to save: LoRA adapters merged into the weights, other models as they are."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return model
    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


def count_trainable(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
