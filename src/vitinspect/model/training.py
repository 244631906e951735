"""Training with the Hugging Face Trainer: ready tensors in, per-epoch dvclive metrics out.

The Trainer does the loop, bf16 on CUDA, checkpoints and DDP (``torchrun``);
this module only feeds it and logs what a reviewer compares between runs.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from vitinspect.core.errors import VitinspectError
from vitinspect.evaluation.metrics import epoch_metrics

FINGERPRINT = "vitinspect_fingerprint.json"


class PixelDataset(torch.utils.data.Dataset):
    """Decoded once: (N, 3, S, S) float pixel values and (N,) int labels."""

    def __init__(self, pixel_values: torch.Tensor, labels: np.ndarray):
        self.pixel_values = pixel_values
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return {"pixel_values": self.pixel_values[i], "labels": self.labels[i]}


class ImageDataset(torch.utils.data.Dataset):
    """Images stay uint8 where they are (e.g. :class:`vitinspect.data.arrow.MappedImages` over the memory-mapped
    Arrow file); each batch is gathered and converted to float ``pixel_values`` by ``convert`` on its own,
    so memory does not grow with the split. Gives the same tensors as converting the whole split first."""

    def __init__(self, images, labels: np.ndarray, convert):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.convert = images, convert
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return {"pixel_values": self.convert(self.images[[i]])[0], "labels": self.labels[i]}

    def __getitems__(self, indices):
        """One batch at once (torch's DataLoader calls this with the batch's indices): one gather, one conversion."""
        idx = np.asarray(indices, dtype=np.int64)
        return {"pixel_values": self.convert(self.images[idx]), "labels": self.labels[torch.from_numpy(idx)]}


def collate(rows):
    if isinstance(rows, dict):  # a batch made whole by ImageDataset.__getitems__
        return rows
    return {"pixel_values": torch.stack([r["pixel_values"] for r in rows]), "labels": torch.stack([r["labels"] for r in rows])}


def balanced_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """n / (K * count_c) per class (scikit-learn's 'balanced'); absent classes weigh 0."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.divide(len(labels), n_classes * counts, out=np.zeros(n_classes), where=counts > 0)
    return torch.tensor(w, dtype=torch.float32)


def weighted_loss(weights: torch.Tensor, label_smoothing: float = 0.0):
    """Class-weighted cross-entropy (the Trainer's own label smoother is bypassed by a custom loss, so it is here)."""
    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        return torch.nn.functional.cross_entropy(logits.float(), labels, weight=weights.to(logits.device),
                                                 label_smoothing=label_smoothing)

    return loss


def resolve_device(device: str) -> tuple[bool, bool]:
    """(use_cpu, bf16) for ``train.device``: auto takes CUDA with bf16 when present."""
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise VitinspectError("params.yaml: train.device is 'cuda' but no CUDA device is visible")
    use_cuda = cuda and device in ("auto", "cuda")
    return (not use_cuda), (use_cuda and torch.cuda.is_bf16_supported())


class EpochLog(TrainerCallback):
    """One dvclive step per epoch: train loss, val loss, accuracy, macro-F1, per-class recall.

    After a resume, the epochs already done are replayed from the Trainer's own
    log history, so the curves are those of an uninterrupted run.
    """

    def __init__(self, live):
        self.live = live

    @staticmethod
    def _epochs(history):
        """Merge the Trainer's log entries into one dict per finished epoch."""
        by_epoch: dict[float, dict] = {}
        for entry in history:
            if "epoch" in entry and ("loss" in entry or "eval_loss" in entry):
                by_epoch.setdefault(round(entry["epoch"], 4), {}).update(entry)
        return [v for _, v in sorted(by_epoch.items()) if "eval_loss" in v]

    def _log(self, entry):
        self.live.log_metric("train/loss", round(float(entry.get("loss", float("nan"))), 6))
        for key, value in sorted(entry.items()):
            if key.startswith("eval_") and key not in ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second"):
                self.live.log_metric(f"val/{key[5:]}", round(float(value), 6))
        self.live.next_step()

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            for entry in self._epochs(state.log_history):
                self._log(entry)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.is_world_process_zero:
            entry = self._epochs(state.log_history)[-1]
            self._log(entry)
            print(epoch_line(entry, args.num_train_epochs), flush=True)


def epoch_line(entry: dict, epochs: float) -> str:
    """One readable log line for a finished epoch (the Trainer's own printer shows raw dicts)."""
    figures = [("train loss", entry.get("loss")), ("val loss", entry.get("eval_loss")),
               ("accuracy", entry.get("eval_accuracy")), ("macro-F1", entry.get("eval_macro_f1"))]
    said = ", ".join(f"{name} {float(v):.4f}" for name, v in figures if v is not None)
    return f"epoch {round(entry['epoch'])}/{round(epochs)}: {said}"


def fingerprint(*parts) -> str:
    """A hash of everything that decides the weights: params sections, input arrays, training code (bytes)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, bytes):
            h.update(p)
        elif isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p))
        elif isinstance(p, Iterator):  # arrays one after another (a mapped column's blocks, scanned once)
            for block in p:
                h.update(np.ascontiguousarray(block))
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()


def discard_foreign_checkpoints(directory: Path, key: str) -> None:
    """Keep ``directory`` only if its checkpoints come from the same fingerprint; mark it with ``key``."""
    marker = directory / FINGERPRINT
    if directory.exists():
        same = marker.exists() and json.loads(marker.read_text()).get("fingerprint") == key
        if not same:
            shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": key}) + "\n")


def _checkpoints(directory: Path) -> list[Path]:
    """checkpoint-N directories, highest N first (the one ``resume_from_checkpoint=True`` would load)."""
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith("checkpoint-") and p.name[11:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[11:]), reverse=True)


def _complete(checkpoint: Path) -> bool:
    """Weights readable (safetensors header), trainer_state.json readable, optimizer and scheduler
    saved. The Trainer writes trainer_state.json after the weights and optimizer, so a checkpoint
    cut by a kill or a full disk lacks it or something before it."""
    from safetensors import safe_open

    try:
        with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as f:
            f.keys()
        json.loads((checkpoint / "trainer_state.json").read_text())
    except Exception:  # missing, empty, truncated: all one story
        return False
    return all((checkpoint / name).is_file() and (checkpoint / name).stat().st_size > 0 for name in ("optimizer.pt", "scheduler.pt"))


def _check_tensor_files(checkpoint: Path) -> None:
    """Every pickle-based file the Trainer loads on resume (optimizer, scheduler, scaler, RNG states)
    must pass torch's weights_only loader with the Trainer's own numpy allowlist, so a planted
    pickle is refused with one line before the Trainer reaches it (training_args.bin is never loaded)."""
    from transformers.trainer_pt_utils import safe_globals

    for f in sorted([*checkpoint.glob("*.pt"), *checkpoint.glob("*.pth")]):
        try:
            with safe_globals():
                torch.load(f, map_location="cpu", weights_only=True, mmap=True)  # mmap: the pickle is read, not the tensors
        except pickle.UnpicklingError as exc:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
            what = f"it calls {found.group(1)}" if found else "its pickle names code to run"
            raise VitinspectError(f"{f}: refused, not plain tensors ({what}); "
                                  f"delete {checkpoint} to train from the previous checkpoint") from None
        except Exception as exc:
            raise VitinspectError(f"{f}: unreadable ({type(exc).__name__}); delete {checkpoint} to train from the previous checkpoint") from None


def resume_point(directory: Path) -> Path | None:
    """The checkpoint to resume from: the highest-numbered complete one. Incomplete ones (a kill or a
    full disk during a checkpoint write) are removed, since the Trainer would otherwise pick the
    highest-numbered directory, complete or not, and fail on every later run. Raises a one-line
    VitinspectError if the chosen one holds a file that is not plain tensors."""
    if not directory.is_dir():
        return None
    for checkpoint in _checkpoints(directory):
        if _complete(checkpoint):
            _check_tensor_files(checkpoint)
            return checkpoint
        shutil.rmtree(checkpoint)
    return None


def diverged(log_history: list[dict]) -> dict | None:
    """The first log entry whose loss is NaN or infinite (a diverged run), or None."""
    for entry in log_history:
        for key in ("loss", "grad_norm", "eval_loss"):
            if key in entry and not np.isfinite(entry[key]):
                return {"epoch": entry.get("epoch"), "key": key, "value": entry[key]}
    return None


class StopOnNonFinite(TrainerCallback):
    """Stop at the first non-finite loss: every later step would be wasted on NaN weights."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and diverged([logs]):
            control.should_training_stop = True
            control.should_save = False


class CheckpointTrainer(Trainer):
    """The Trainer, with weights restored on resume through ``from_pretrained``.

    transformers 5 saves ViT checkpoints under the legacy parameter names
    (``vit.encoder.layer.N...``) but the Trainer's resume loads them with a plain
    ``load_state_dict(strict=False)`` against the new names (``vit.layers.N...``):
    every key misses, only a warning is printed, and training "resumes" from the
    random initialisation. ``from_pretrained`` applies the name conversion.
    """

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        model = self.model if model is None else model
        if _is_peft(model):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        # type(model): transformers' ViT, or the conv-stem subclass that rebuilds its stem (vitinspect.model.stem)
        loaded = type(model).from_pretrained(resume_from_checkpoint, attn_implementation="eager", use_safetensors=True)
        result = model.load_state_dict(loaded.state_dict(), strict=True)
        return result

    def _load_best_model(self):
        """``train.best_on_val``: the best epoch's weights, through the same name conversion as a resume."""
        if _is_peft(self.model):
            return super()._load_best_model()
        self._load_from_checkpoint(self.state.best_model_checkpoint)


def _is_peft(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


def trainer_args(output_dir, p, **specific) -> TrainingArguments:
    """TrainingArguments from a params section with epochs, batch_size, lr, weight_decay, warmup_ratio,
    seed and device (train.*, pretrain.*): a cosine schedule (``schedule``, where the section has it: a
    transformers ``lr_scheduler_type``), a log per epoch, bf16 on CUDA, no progress bars, no hub, no loader
    workers; ``specific`` adds to or overrides that."""
    use_cpu, bf16 = resolve_device(p.device)
    return TrainingArguments(**{
        "output_dir": str(output_dir),
        "num_train_epochs": p.epochs,
        "per_device_train_batch_size": p.batch_size,
        "learning_rate": p.lr,
        "weight_decay": p.weight_decay,
        "warmup_steps": p.warmup_ratio,
        **schedule_args(getattr(p, "schedule", "cosine")),
        "logging_strategy": "epoch",
        "seed": p.seed,
        "data_seed": p.seed,
        "use_cpu": use_cpu,
        "bf16": bf16,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        "ddp_find_unused_parameters": False,
        **specific,
    })


def schedule_args(schedule: str) -> dict:
    """TrainingArguments for ``train.schedule``: transformers' own schedulers (cosine_with_min_lr ends at a tenth of the peak)."""
    if schedule == "cosine_with_min_lr":
        return {"lr_scheduler_type": schedule, "lr_scheduler_kwargs": {"min_lr_rate": 0.1}}
    return {"lr_scheduler_type": schedule}


def best_args(train_params) -> dict:
    """``train.label_smoothing`` and ``train.best_on_val`` (the best epoch on val macro-F1 kept, its checkpoint
    spared by ``save_total_limit``); at their defaults nothing, so the Trainer's arguments stay today's."""
    t, out = train_params, {}
    if t.label_smoothing:
        out["label_smoothing_factor"] = t.label_smoothing
    if t.best_on_val:
        out.update(load_best_model_at_end=True, metric_for_best_model="macro_f1", greater_is_better=True)
    return out


def make_trainer(model, train_ds, val_ds, classes, train_params, checkpoint_dir: Path, class_weights=None,
                 good: str = "passed") -> Trainer:
    """A Trainer that evaluates, logs and checkpoints once per epoch."""
    t = train_params

    def compute_metrics(pred):
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        return epoch_metrics(np.asarray(pred.label_ids), np.asarray(logits).argmax(-1), classes, good)

    args = trainer_args(checkpoint_dir, t, per_device_eval_batch_size=max(t.batch_size, 256),
                        eval_strategy="epoch", save_strategy="epoch", save_total_limit=2, **best_args(t))
    trainer = CheckpointTrainer(
        callbacks=[StopOnNonFinite()],
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=collate,
        compute_metrics=compute_metrics,
        compute_loss_func=weighted_loss(class_weights, t.label_smoothing) if class_weights is not None else None,
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log as a dict; EpochLog prints one line an epoch
    return trainer
