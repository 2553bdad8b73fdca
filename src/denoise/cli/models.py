"""``denoise models``: the registry, whether each model can run here, its card."""
from __future__ import annotations

import argparse

from .args import one_line


def register(sub) -> None:
    p = sub.add_parser("models", help="list the models, whether they can run here, their cards",
                       description="List every registered model: kind, whether it can run here "
                                   "(weights shipped, optional packages installed), its "
                                   "description and a summary of its model card.")
    p.add_argument("--json", action="store_true", help="print JSON (with the full model cards)")
    p.set_defaults(func=cmd_models)


def model_status(entry) -> dict:
    """What ``denoise models`` says about one registry entry, as a JSON-ready dict."""
    kind = "user" if entry.user else (entry.kind if entry.kind != "learned" or entry.pretrained
                                      else "architecture")
    return {"name": entry.name, "kind": kind, "available": entry.available(),
            "status": "; ".join(entry.missing()) or "ready",
            "weights_shipped": entry.has_weights() if entry.kind == "learned" else None,
            "missing_extras": entry.missing_extras(), "description": entry.description,
            "card": entry.card() if entry.pretrained else None,
            "weights": str(entry.weights_path) if entry.pretrained else None}


def card_summary(card: dict | None) -> str:
    """One line from a model card: its "summary" if it has one, else what it was trained
    on and how (data, targets, noise, steps, validation PSNR), else its first plain fields."""
    if not card:
        return ""
    if isinstance(card.get("summary"), str):
        return one_line(card["summary"])
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    validation = card.get("validation") if isinstance(card.get("validation"), dict) else {}
    parts = []
    if isinstance(card.get("data"), str):
        parts.append("trained on " + card["data"].split(" (")[0])
    if card.get("targets"):
        parts.append(f"{card['targets']} targets")
    if card.get("noise"):
        parts.append(f"noise {card['noise']}")
    if training.get("steps"):
        parts.append(f"{training['steps']} steps")
    if isinstance(validation.get("psnr_db"), (int, float)):
        at = f" at {validation['noise']}" if validation.get("noise") else ""
        parts.append(f"validation PSNR {validation['psnr_db']:.2f} dB{at}")
    if not parts:
        parts = [f"{k}: {v}" for k, v in card.items()
                 if isinstance(v, (str, int, float)) and k != "name"][:4]
    return one_line("; ".join(parts))


def cmd_models(args: argparse.Namespace) -> int:
    """``denoise models``: a table (or JSON) of the registry."""
    import json

    from ..inference import ENSEMBLE_SUFFIX as SUFFIX
    from ..models.registry import list_models
    from ..models.user import user_models_dir

    statuses = [model_status(e) for e in list_models()]
    if args.json:
        print(json.dumps(statuses, indent=2))
        return 0
    print(text_table(["model", "kind", "status", "description"],
                     [[s["name"], s["kind"], s["status"], s["description"]] for s in statuses]))
    cards = [(s["name"], card_summary(s["card"])) for s in statuses if s["card"]]
    if cards:
        print("\nModel cards:")
        for name, summary in cards:
            print(f"  {name}: {summary}")
    print(f"\nAny name + '{SUFFIX}' (e.g. default{SUFFIX}): the model averaged over the 8 flips and "
          "rotations of the image, 8x the time.")
    print(f"Your own models (kind 'user'): {user_models_dir()} ($DENOISE_MODELS); "
          "'denoise export-weights RUN NAME' puts them there. A path to weights or to a "
          "training run folder also works as a model name.")
    return 0



def text_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain aligned table for the terminal (no markdown escapes)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])
