"""`make peer` and the PR report's peer rows: the ViT beside the RT+SVM machine and the CNN, judged against the
stronger of the two (the peer with the higher macro-F1 on the table)."""

from __future__ import annotations

import math

PEER = "metrics/baseline.json"  # the RT+SVM peer, eval.json's figures
CNN_PEER = "metrics/baseline_cnn.json"  # the CNN peer, the same keys ({} when baseline.cnn.enabled is false)
PEER_NAMES = ("RT+SVM", "CNN")


# The headline rows that decide whether the ViT earns its keep against the peers:
# (label, how to read it from an eval-shaped dict, lower is better).
# The ViT's side is the classifier's own figures (eval.json's classifier_ keys since the gate; the older files' plain
# keys): the peers are classifiers too.
def _classifier(key):
    return lambda m: m.get(f"classifier_{key}", m.get(key))


PEER_ROWS = (
    ("accuracy", _classifier("accuracy"), False),
    ("macro-F1", lambda m: m.get("macro_f1"), False),
    ("defect macro-F1", _classifier("macro_f1_defects"), False),
    ("escapes per million defective", _classifier("escapes_per_million"), True),
    ("false-reject rate", _classifier("false_reject_rate"), True),
    ("operating point t", _classifier("threshold"), None),
)


def _number(x):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def stronger_peer(peers: dict[str, dict | None]) -> str | None:
    """The name of the peer with the higher macro-F1 (the first named on a tie), among those that have one; None
    when none has."""
    scored = [(name, _number(m.get("macro_f1"))) for name, m in peers.items() if isinstance(m, dict)]
    scored = [(name, f1) for name, f1 in scored if f1 is not None]
    return max(scored, key=lambda s: s[1])[0] if scored else None


def peer_section(vit_eval, peer_eval, cnn_eval=None, title: str = "ViT vs the peers (workspace, test split)") -> str:
    """Markdown: the ViT, the RT+SVM peer and the CNN peer on the headline rows, and whether the ViT is ahead of the
    stronger peer on each.

    vit_eval, peer_eval, cnn_eval: dicts shaped like metrics/eval.json (metrics/baseline.json and
    metrics/baseline_cnn.json are). Empty when the ViT's or the SVM's is missing, so a report from a revision
    without the peer stays as it was; the CNN's column says n/a where it has no figures (a revision before it, or
    ``baseline.cnn.enabled: false``).
    """
    if not vit_eval or not peer_eval:
        return ""
    peers = {"RT+SVM": peer_eval, "CNN": cnn_eval if isinstance(cnn_eval, dict) and cnn_eval else None}
    strong = stronger_peer(peers)
    lines = [f"## {title}", "", f"| figure | ViT | {' | '.join(PEER_NAMES)} | ahead (ViT vs {strong or 'the stronger peer'}) |",
             "|---|---:|---:|---:|---|"]
    fmt = (lambda v: "n/a" if v is None else f"{v:.4f}")
    for label, get, lower in PEER_ROWS:
        a = _number(get(vit_eval))
        cells = [_number(get(m)) if m else None for m in peers.values()]
        b = _number(get(peers[strong])) if strong else None
        if a is None or b is None:
            ahead = "n/a"
        elif lower is None:  # a setting, not a figure: nobody is ahead
            ahead = ""
        elif abs(a - b) <= 1e-9:
            ahead = "tie"
        else:
            ahead = "ViT" if (a < b) == lower else strong
        lines.append(f"| {label} | {fmt(a)} | {' | '.join(fmt(c) for c in cells)} | {ahead} |")
    f1 = {n: _number(m.get("macro_f1")) for n, m in peers.items() if m}
    said = " and ".join(f"{n} {v:.4f}" for n, v in f1.items() if v is not None)
    judged = (f"The ViT is judged against the stronger peer, the one with the higher macro-F1: **{strong}** ({said})."
              if strong else "No peer has a macro-F1 here.")
    cnn_note = "" if peers["CNN"] else " The CNN peer has no figures here (`metrics/baseline_cnn.json` missing or empty)."
    lines += ["", judged + cnn_note, "",
              "All on the same test parts, each at its own operating point chosen on val by the same rule; "
              "the peers' fit, training and predict times are in logs/baseline_run.json.", ""]
    return "\n".join(lines)
