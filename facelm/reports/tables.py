"""The result tables and sentences of the reports, from their JSON rows: the stages print them, and `facelm readme`
writes them into the README and docs. numpy-free and torch-free: the on-device bench prints its table from here."""
from __future__ import annotations

from facelm.metrics import format_rho

BUDGET_MS = 5.0  # the mobile latency budget a model's p50 is judged against
STUDENT_MAX_MB = 2.0  # release bar on a student's fp32 weights
OLD_RANKING = "the test faces (300w/testset): these runs predate the validation split"


def text_table(headers: tuple[str, ...], rows: list[tuple[str, ...]], align: str) -> str:
    """Columns padded to their widest cell; `align` has one 'l' or 'r' per column."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _fmt(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def bench_table(rows: list[dict]) -> str:
    """One row per model x runtime x threads."""
    headers = ("model", "format", "runtime", "thr", "p50 ms", "p90 ms", "min ms", f"{BUDGET_MS:g} ms budget", "load ms",
               "size MB", "peak RSS MB", "+RSS MB", "NME %", "FR@10 %", "AUC@10")
    body = []
    for r in rows:
        acc = r.get("accuracy") or {}
        body.append((r["model"], r["format"], r["runtime"], str(r["threads"]), _fmt(r["p50_ms"], 3), _fmt(r["p90_ms"], 3),
                     _fmt(r["min_ms"], 3), "within" if r["p50_ms"] <= BUDGET_MS else "OVER", _fmt(r["load_ms"], 0),
                     _fmt(r["size_mb"], 2), _fmt(r["peak_rss_mb"], 1), _fmt(r["rss_increase_mb"], 1),
                     _fmt(acc.get("nme"), 3), _fmt(acc.get("fr10"), 2), _fmt(acc.get("auc10"), 4)))
    return text_table(headers, body, "lll" + "r" * 12)


def export_markdown(rows: list[dict], torch_report: dict, size: int) -> str:
    lines = [f"PyTorch: NME {torch_report['nme']:.3f}%, FR@10 {torch_report['fr10']:.2f}%, AUC@10 {torch_report['auc10']:.4f} "
             f"on {torch_report['n']} faces; point differences in pixels at {size} px.", "",
             "| format | status | file | MB | precision | converter | runtime | NME % | delta NME | max px | mean px | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['error']}"
        if "nme" in r:
            lines.append(f"| {r['format']} | {status} | {r['file']} | {r['size_mb']:.3f} | {r['precision']} | {r['converter']} | "
                         f"{r['runtime']} | {r['nme']:.3f} | {r['delta_nme']:+.3f} | {r['max_abs_px']:.3f} | "
                         f"{r['mean_abs_px']:.4f} | {r['seconds']:.1f} |")
        else:
            lines.append(f"| {r['format']} | {status} | {r.get('file', '')} | | {r['precision']} | {r.get('converter', '')} | "
                         f"{r['runtime']} | | | | | |")
    return "\n".join(lines) + "\n"


def ablation_markdown(rows: list[dict], vary: str = "loss", also: tuple[str, ...] = ()) -> str:
    """The ablation table: a column for the varied option and for each option varied with it that the rows record."""
    parts = any(r.get("test_parts") for r in rows)
    also = [key for key in also if any(key in r for r in rows)]
    lines = [f"Ranked on {', '.join(sorted({r.get('ranked_on') or OLD_RANKING for r in rows}))}.", "",
             f"| {' | '.join([vary, *also])} | NME % | FR@10 % | AUC@10 | Spearman(conf, err) | test NME % (reported, "
             "never ranked on) | " + ("test parts NME % | " if parts else "") + "img/s | wall min |",
             "|" + "---|" * (8 + parts + len(also))]
    lines += [f"| {' | '.join(str(r.get(key, '')) for key in [vary, *also])} | {r['nme']:.3f} | {r['fr10']:.2f} | "
              f"{r['auc10']:.4f} | {format_rho(r['spearman_conf_error'])} | "
              + (f"{r['test_nme']:.3f} |" if r.get("test_nme") is not None else "|")
              + (" " + ", ".join(f"{part} {nme:.3f}" for part, nme in r.get("test_parts", {}).items()) + " |" if parts else "")
              + (f" {r['train_img_per_s']:.0f} |" if r.get("train_img_per_s") else " |")
              + f" {r['train_wall_seconds'] / 60:.1f} |" for r in rows]
    return "\n".join(lines) + "\n"


def photometric_text(schedule: dict) -> str:
    """How a schedule's photometric augmentation reads in a report, saying what a strength meant for older runs."""
    if schedule["photometric"] == 1.0 or schedule.get("photometric_rule", 1) >= 2:
        return f"photometric {schedule['photometric']}"
    return (f"photometric {schedule['photometric']} on brightness/contrast only (hue, RGB shift, light cast, grey, "
            "blur and noise ran at full strength: the option's old rule)")


def share_text(row: dict) -> str:
    """A distilled arm's labelled share, with the batch split where the photos ride on top of a full labelled batch."""
    photos = row.get("unlabelled_per_batch") or 0
    split = f" ({row['schedule']['batch_size']} faces + {photos} photos)" if photos else ""
    return f"{row['labelled_fraction']}{split}"


def arm_name(row: dict, schedule: dict) -> str:
    recipe = recipe_text(row["schedule"])
    if recipe != recipe_text(schedule):
        return f"{row['mode']}, {recipe}"
    if row["schedule"]["head"] != schedule["head"]:
        return f"{row['mode']}, {row['schedule']['head']} head (control)"
    if row["mode"] == "labels":
        batch = row["schedule"]["batch_size"]
        return "labels" if batch == schedule["batch_size"] else f"labels, batch {batch} (control)"
    normed = ", confidence-normalised" if row.get("kd_confidence_norm") else ""
    return (f"distill (teacher `{row['teacher']['sha256'][:8]}`, share {share_text(row)}, "
            f"KD on labelled {row.get('kd_labelled_weight') or 1.0}{normed})")


def recipe_text(schedule: dict) -> str:
    """A run's data recipe as an arm's name shows it: its labelled sources and the run it started from."""
    sources = " + ".join(schedule.get("labelled_sources") or ["300w"])
    start = f", started from run `{schedule['init']}`" if schedule.get("init") else ""
    return f"labels: {sources}{start}"


def chosen_on_sentence(ab: dict) -> str:
    """Which faces the arms' NME (and so the choice of the distilled arm among its variants) was measured on."""
    arms = [ab["labels"], ab["distill"], *ab["variants"]]
    if all(r.get("nme_on") == "validation" for r in arms):
        return "NME on the validation faces, which chose the distilled arm among its variants."
    return ("NME on the test faces (300w/testset), which also chose the distilled arm among its variants: these runs "
            "predate the validation split, so the gain is optimistic.")


def ab_markdown(ab: dict) -> str:
    lines = [chosen_on_sentence(ab), "","| arm | teacher (its NME %) | labelled share of batch | KD weight on labelled faces | "
             "confidence weights / their mean | NME % | FR@10 % | AUC@10 | Spearman(conf, err) | img/s | wall min |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    arms = [ab["labels"], *ab.get("crop_controls", []), *ab["variants"], *ab.get("head_controls", []),
            *ab.get("recipe_arms", [])]
    for r in arms:
        arm = "distill (B arm)" if r["run"] == ab["distill"]["run"] else (
            "distill" if r in ab["variants"] else arm_name(r, ab["schedule"]))
        share = "1.0" if r["mode"] == "labels" else share_text(r)
        kd = "" if r["mode"] == "labels" else f"{r.get('kd_labelled_weight') or 1.0}"
        normed = "" if r["mode"] == "labels" else ("yes" if r.get("kd_confidence_norm") else "no")
        teacher = "" if r["mode"] == "labels" else f"`{r['teacher']['sha256'][:8]}` ({r['teacher_nme']:.3f})"
        lines.append(f"| {arm} | {teacher} | {share} | {kd} | {normed} | {r['nme']:.3f} | {r['fr10']:.2f} | {r['auc10']:.4f} | "
                     f"{format_rho(r['spearman_conf_error'])} | {r['train_img_per_s']:.0f} | "
                     f"{r['train_wall_seconds'] / 60:.0f} |")
    epochs = list(ab["labels"]["eval_nme_by_epoch"])
    lines += ["", "NME % by epoch, on the same faces:", "", "| arm | " + " | ".join(f"ep {e}" for e in epochs) + " |",
              "|---|" + "---|" * len(epochs)]
    for r in arms:
        curve = r["eval_nme_by_epoch"]
        lines.append(f"| {arm_name(r, ab['schedule'])} | "
                     + " | ".join(f"{curve[e]:.3f}" if e in curve else "" for e in epochs) + " |")
    return "\n".join(lines) + "\n"


def fit_sentence(ab: dict) -> str:
    """Training-face NME against test NME for both arms and the teacher, as one paragraph."""
    fit = ab["training_fit"]
    return (f"On its {fit['n']} labelled training faces (eval-rule crops, no augmentation): labels arm "
            f"{fit['labels']:.3f}% NME (test {ab['labels']['nme']:.3f}%), distilled arm {fit['distill']:.3f}% "
            f"(test {ab['distill']['nme']:.3f}%), teacher {fit['teacher']:.3f}% (test {ab['distill']['teacher_nme']:.3f}%), "
            f"teacher's mirror-averaged targets {fit['teacher_targets']:.3f}%.")


def families_markdown(table: list[dict]) -> str:
    lines = ["| student | params | MFLOPs | fp32 MB | NME % | FR@10 % | AUC@10 | Spearman(conf, err) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table:
        accuracy = (f"{r['nme']:.3f} | {r['fr10']:.2f} | {r['auc10']:.4f} | {format_rho(r['spearman_conf_error'])}"
                    if r["run"] else "not trained on this schedule | | |")
        lines.append(f"| {r['arch']} | {r['params'] / 1e6:.2f} M | {r['mflops']:.1f} | {r['fp32_mb']:.2f} | {accuracy} |")
    return "\n".join(lines) + "\n"


def pick_sentence(table: list[dict], max_mb: float) -> str:
    """Which trained family to pick: the lowest NME overall, and the lowest within a weights-size budget."""
    trained = [r for r in table if r["run"]]
    if not trained:
        return "No family trained on this schedule yet."

    def named(r: dict) -> str:
        return f"`{r['arch']}` ({r['nme']:.3f}% NME, {r['mflops']:.1f} MFLOPs, {r['fp32_mb']:.2f} MB)"

    best = min(trained, key=lambda r: r["nme"])
    small = [r for r in trained if r["fp32_mb"] <= max_mb]
    within = (f"lowest within {max_mb} MB fp32: {named(min(small, key=lambda r: r['nme']))}" if small
              else f"none trained is within {max_mb} MB fp32")
    return f"Of {len(trained)} trained: lowest NME {named(best)}; {within}."
