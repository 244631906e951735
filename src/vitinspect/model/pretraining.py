"""Masked-autoencoder pretraining on unlabeled rendered parts (transformers' ``ViTMAEForPreTraining``).

As in the HF ``run_mae`` example: a ViT encoder sees a random 25 % of the patches, a small
decoder reconstructs the rest, and the loss is the mean squared error over the masked patches.
The encoder it learns is copied into a plain ``ViTModel`` (no head) so that ``model.source:
pretrain`` loads it through the same path as any local checkpoint (``model.load_pretrained``),
with a fresh head for our classes.

transformers 5 gives ViTMAE's encoder and ViT the same parameter names (``embeddings.*``,
``layers.N.attention.q_proj``, ``layers.N.mlp.fc1``, ``layernorm``): :func:`encoder_as_vit`
copies them one to one and refuses any tensor left over or missing on either side, so none is
skipped silently.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time

import numpy as np
import torch
from transformers import TrainerCallback, ViTConfig, ViTMAEConfig, ViTMAEForPreTraining, ViTModel

from vitinspect.composite.nsoartc import composite
from vitinspect.data.synthetic import generate
from vitinspect.data.user_parts import plan, read_parts
from vitinspect.model.prediction import to_pixel_values
from vitinspect.model.training import trainer_args
from vitinspect.model.vit import InputSpec, encoder_kwargs

# ---------------------------------------------------------------------------- the unlabeled parts


def unlabeled_views(data_params, n_parts: int, seed: int) -> np.ndarray:
    """Render ``n_parts`` parts like the labelled set (same geometry, nuisance and class mix) but
    from their own seed; labels, masks and splits are dropped. Returns (N, V, S, S) uint8.

    With ``data.source: folders`` our renderer cannot draw the user's parts: up to ``n_parts`` of their
    *training* parts (drawn with ``seed``) are read instead, labels dropped; never a val or test part."""
    if data_params.source == "folders":
        train = [p for p in plan(data_params).parts if p.split == "train"]
        take = np.sort(np.random.default_rng([seed, 7]).permutation(len(train))[:n_parts])
        return read_parts([train[i] for i in take], data_params.image_size, data_params.folders.on_bad_part)[0]["views"]
    return generate(dataclasses.replace(data_params, seed=seed, n_images=n_parts))["views"]


def as_representation(views: np.ndarray, view_names: list[str], input_name: str, space, nsoartc_params,
                      chunk: int = 1000) -> np.ndarray:
    """(N, V, S, S) uint8 views -> the training representation, uint8.

    ``raw``: the centre view, (N, S, S). ``nsoartc``: the RT composite z-scored by ``space`` (the labelled
    training set's unit space, the one ``train`` sees; None for raw), (N, S, S, 3), ``chunk`` parts at a
    time (bounded float memory at any n_parts).
    """
    if input_name == "raw":
        return np.ascontiguousarray(views[:, view_names.index("center")])
    p = nsoartc_params
    return composite(views, view_names, space, p.window, p.gain, p.eps, chunk=chunk)


# ---------------------------------------------------------------------------- the model


def mae_config(model_params, image_size: int, pretrain_params) -> ViTMAEConfig:
    """Encoder sized by ``model.*`` (as the scratch ViT), decoder by ``pretrain.decoder.*``."""
    q = pretrain_params
    return ViTMAEConfig(
        **encoder_kwargs(model_params, image_size),
        decoder_hidden_size=q.decoder.hidden_size,
        decoder_num_hidden_layers=q.decoder.layers,
        decoder_num_attention_heads=q.decoder.heads,
        decoder_intermediate_size=q.decoder.mlp_size,
        mask_ratio=q.mask_ratio,
        norm_pix_loss=q.norm_pix_loss,
    )


def sincos_table(n_patches: int, dim: int) -> torch.Tensor:
    """(1, 1 + n_patches, dim): MAE's fixed 2-D sin-cos position table, a zero row for the CLS token first
    (in the half order of transformers' ``ViTMAEEmbeddings.initialize_weights``)."""
    from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

    g = int(round(n_patches ** 0.5))
    table = torch.as_tensor(build_2d_sinusoidal_position_embedding(height=g, width=g, embed_dim=dim, cls_token=True)).float()
    half = table.shape[-1] // 2
    return torch.cat([table[..., half:], table[..., :half]], dim=-1).reshape(1, 1 + n_patches, dim)


def build_mae(config: ViTMAEConfig, seed: int) -> ViTMAEForPreTraining:
    """A freshly initialised MAE; the same seed gives the same weights.

    Built from a config, transformers 5 leaves both position tables, the CLS token and the mask token
    at zero (``_init_weights`` zeroes the decoder's table and skips the encoder's sin-cos set-up once the
    patch projection counts as initialised). Without positions the encoder and decoder cannot tell
    patches apart, every mask token gets the same prediction, and the MAE can only learn the mean
    pixel. So they are set here as the MAE paper (and ``initialize_weights``) sets them.
    """
    torch.manual_seed(seed)
    mae = ViTMAEForPreTraining(config)
    emb, dec = mae.vit.embeddings, mae.decoder
    n = emb.patch_embeddings.num_patches
    with torch.no_grad():
        emb.position_embeddings.copy_(sincos_table(n, config.hidden_size))
        dec.decoder_pos_embed.copy_(sincos_table(n, config.decoder_hidden_size))
        w = emb.patch_embeddings.projection.weight
        w.copy_(torch.nn.init.xavier_uniform_(torch.empty(w.shape[0], w[0].numel())).view_as(w))
        torch.nn.init.normal_(emb.cls_token, std=config.initializer_range)
        torch.nn.init.normal_(dec.mask_token, std=config.initializer_range)
    return mae


def encoder_as_vit(mae: ViTMAEForPreTraining) -> ViTModel:
    """The MAE's encoder as a plain ``ViTModel`` (no pooler), every tensor copied.

    Raises RuntimeError naming the tensors when the two do not match one to one.
    """
    c = mae.config
    vit = ViTModel(ViTConfig(
        image_size=c.image_size, patch_size=c.patch_size, num_channels=c.num_channels, hidden_size=c.hidden_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        intermediate_size=c.intermediate_size, hidden_act=c.hidden_act, layer_norm_eps=c.layer_norm_eps,
        qkv_bias=c.qkv_bias, initializer_range=c.initializer_range,
    ), add_pooling_layer=False)
    source = {k: v.detach().clone() for k, v in mae.vit.state_dict().items()}
    target = vit.state_dict()
    missing, extra = sorted(set(target) - set(source)), sorted(set(source) - set(target))
    wrong = [k for k in target if k in source and source[k].shape != target[k].shape]
    if missing or extra or wrong:
        raise RuntimeError(f"MAE encoder -> ViT: missing {missing[:3]}, unexpected {extra[:3]}, shape mismatch {wrong[:3]}")
    vit.load_state_dict(source, strict=True)
    return vit


# ---------------------------------------------------------------------------- training


class UnlabeledImages(torch.utils.data.Dataset):
    """uint8 images without labels, kept as uint8 (a 100k-part 224 px set stays ~15 GB, not 60 GB of floats)."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def collator(spec: InputSpec):
    """Batches of uint8 images -> {"pixel_values"}, normalised as ``train`` normalises them."""

    def collate(rows):
        return {"pixel_values": to_pixel_values(np.stack(rows), spec)}

    return collate


class LossLog(TrainerCallback):
    """One dvclive step per epoch: the mean reconstruction loss over the masked patches."""

    def __init__(self, live):
        self.live = live
        self.losses: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:
            self.losses.append(round(float(logs["loss"]), 6))
            self.live.log_metric("reconstruction_loss", self.losses[-1])
            self.live.next_step()


def make_mae_trainer(model, dataset, spec: InputSpec, pretrain_params, output_dir):
    """The HF Trainer (bf16 on CUDA, DDP under torchrun), one log per epoch, no checkpoints."""
    from transformers import Trainer

    # The MAE paper's AdamW betas; no evaluation, no checkpoints.
    args = trainer_args(output_dir, pretrain_params, adam_beta2=0.95, eval_strategy="no", save_strategy="no")
    return Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator(spec))


@dataclasses.dataclass
class MaeRun:
    """A finished pretraining: the MAE, the images it learnt from ((N, S, S[, 3]) uint8) and their InputSpec,
    the reconstruction loss per epoch (rank 0's log; empty on other ranks), the Trainer's train metrics,
    the seconds spent rendering and training, and ``info``: the run's speed, timings and device, rounded
    for logs/pretrain_run.json (they vary run to run)."""

    mae: ViTMAEForPreTraining
    images: np.ndarray
    spec: InputSpec
    losses: list[float]
    metrics: dict
    render_seconds: float
    train_seconds: float
    info: dict


def pretrain_mae(data_params, pretrain_params, model_params, nsoartc_params, space, live) -> MaeRun:
    """Render ``pretrain.n_parts`` unlabeled parts (:func:`unlabeled_views`), turn them into the
    ``pretrain.input`` representation against the unit space ``space`` (None for raw), and train a fresh
    MAE on them with the HF Trainer (a scratch folder for its output, no checkpoints). ``live``: the dvclive
    Live that gets one reconstruction loss per epoch (rank 0), or None (other ranks)."""
    q, d = pretrain_params, data_params
    start = time.perf_counter()
    images = as_representation(unlabeled_views(d, q.n_parts, q.seed), d.views, q.input, space, nsoartc_params)
    render_s = time.perf_counter() - start
    spec = InputSpec(d.image_size)
    mae = build_mae(mae_config(model_params, d.image_size, q), q.seed)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = make_mae_trainer(mae, UnlabeledImages(images), spec, q, scratch)
        log = LossLog(live)
        if live is not None:
            trainer.add_callback(log)
        start = time.perf_counter()
        result = trainer.train()
        train_s = time.perf_counter() - start
    info = {"images_per_second": round(float(result.metrics["train_samples_per_second"]), 1),
            "render_seconds": round(render_s, 1), "train_seconds": round(train_s, 1),
            "device": str(trainer.args.device), "bf16": bool(trainer.args.bf16), "world_size": int(trainer.args.world_size)}
    return MaeRun(mae, images, spec, log.losses, result.metrics, render_s, train_s, info)


def pretrained_encoder(run: MaeRun, pretrain_params):
    """What the pretrain stage writes from a finished run: the encoder as a plain ``ViTModel`` (float32, its
    config recording the pretraining in ``vitinspect_pretrain``) and :func:`reconstruct`'s panels of the
    first six parts (original, masked, reconstruction, pasted: (6, S, S, 3) in [0, 1]; loss)."""
    q = pretrain_params
    panels = reconstruct(run.mae, to_pixel_values(run.images[:6], run.spec), q.seed)
    encoder = encoder_as_vit(run.mae.float())
    encoder.config.vitinspect_pretrain = {"input": q.input, "n_parts": q.n_parts, "epochs": q.epochs, "mask_ratio": q.mask_ratio,
                                          "norm_pix_loss": q.norm_pix_loss, "reconstruction_loss": run.losses}
    return encoder, panels


# ---------------------------------------------------------------------------- looking at it


@torch.no_grad()
def reconstruct(mae: ViTMAEForPreTraining, pixel_values: torch.Tensor, seed: int):
    """Masked inputs and reconstructions with a fixed mask (from ``seed``), as images in [0, 1].

    Returns (original, masked, reconstruction, pasted, loss): the first four (N, S, S, 3);
    ``pasted`` is the reconstruction with the visible patches put back. ``loss`` is the
    mean reconstruction loss over the masked patches of these images.
    """
    mae.eval()
    device = next(mae.parameters()).device
    x = pixel_values.to(device)
    n_patches = mae.vit.embeddings.patch_embeddings.num_patches
    noise = torch.rand(len(x), n_patches, generator=torch.Generator().manual_seed(seed)).to(device)
    out = mae(pixel_values=x, noise=noise)
    pred = out.logits.float()
    if mae.config.norm_pix_loss:  # predictions are per-patch normalised: undo it with the true patch statistics
        target = mae.patchify(x).float()
        pred = pred * (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5 + target.mean(dim=-1, keepdim=True)
    recon = mae.unpatchify(pred)
    p = mae.config.patch_size
    mask = out.mask.view(len(x), 1, *(2 * [int(n_patches ** 0.5)]))
    mask = mask.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)
    x = x.float()
    masked = x * (1 - mask) + mask * x.amin()  # hidden patches drawn dark
    pasted = x * (1 - mask) + recon * mask

    def image(t):  # back from mean/std 0.5 to [0, 1], channels last
        return (t * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    return image(x), image(masked), image(recon), image(pasted), float(out.loss)
