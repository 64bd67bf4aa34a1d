"""report.html: one self-contained page (inline SVG and embedded thumbnails, no external fetches)."""

from __future__ import annotations

from html import escape

WEB_COLOUR, SYNTHETIC_COLOUR, DROP_COLOUR = "#2f6fde", "#e07b1a", "#c0392b"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#b9c0cf}main{padding:20px 28px;max-width:1280px}
section{background:#fff;border-radius:8px;padding:16px 20px;margin-bottom:18px;box-shadow:0 1px 2px #0002}
h2{font-size:16px;margin:0 0 12px}.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{flex:1;min-width:130px;background:#f5f6f8;border-radius:6px;padding:10px 14px}
.card b{display:block;font-size:22px}.card span{color:#5b6475;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
.ex{border:1px solid #e1e4ea;border-radius:6px;padding:10px;display:flex;gap:10px}
.ex img,.noimg{width:96px;height:96px;object-fit:contain;background:#eee;border-radius:4px;flex:none}
.ex.video{flex-direction:column}.ex img.strip{width:auto;max-width:100%;height:auto;object-fit:initial}
.noimg{display:flex;align-items:center;justify-content:center;color:#8a93a5;font-size:11px;text-align:center}
.ex ul{margin:4px 0 0;padding-left:16px}.ex li{margin:1px 0}.chosen{font-weight:600}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:11px;color:#fff}
.kept{background:#2e9d5b}.dropped{background:#c0392b}.muted{color:#7a8396;font-size:12px}
table{border-collapse:collapse}td,th{padding:3px 12px 3px 0;text-align:left}
.legend i{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"""


def render(report: dict) -> str:
    t = report["totals"]
    config = report.get("config") or {}
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>capfilt report: {escape(str(report.get('pipeline')))}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>capfilt report — {escape(str(report.get('pipeline')))}</h1>",
        f"<p>{_models_line(config)}</p></header><main>",
        _totals(t),
        _reasons(t),
        _histogram(report["histograms"], *ITM_TEXTS),
        _histogram(report["histograms"]["similarity"], *SIMILARITY_TEXTS, low=-1.0)
        if "similarity" in report["histograms"]
        else "",
        _evaluation(report.get("evaluation"), report.get("ablation")),
        _retrieval(report.get("retrieval")),
        _deduplication(report.get("deduplication")),
        _shards(report.get("shards") or {}, t["shards"]),
        _duplicate_groups([e for e in report.get("examples") or [] if e.get("kept_copy")]),
        _examples("Dropped samples", [e for e in report.get("examples") or [] if e["status"] != "kept"]),
        _examples("Kept samples", [e for e in report.get("examples") or [] if e["status"] == "kept"]),
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _models_line(config: dict) -> str:
    c, f = config.get("captioner", {}), config.get("filter", {})
    return escape(
        f"captioner {c.get('model')} ({c.get('num_captions')} captions, top_p {c.get('top_p')}) · "
        f"filter {f.get('model')} · policy {f.get('policy')} · threshold {f.get('threshold')}"
    )


def _card(value, label: str) -> str:
    return f"<div class='card'><b>{escape(str(value))}</b><span>{escape(label)}</span></div>"


def _totals(t: dict) -> str:
    dropped = sum(t["dropped"].values())
    share = lambda n: f"{100 * n / t['input']:.1f}% of input" if t["input"] else "—"  # noqa: E731
    cards = [
        _card(t["input"], f"input samples in {t['shards']} shard(s)"),
        _card(t["kept"], f"kept ({share(t['kept'])})"),
        _card(t["kept_web"], "kept with their web caption"),
        _card(t["kept_synthetic"], "kept with a synthetic caption"),
        _card(dropped, f"dropped ({share(dropped)})"),
        _card(len(t["failed_shards"]), "unreadable shards"),
    ]
    return f"<section><h2>Totals</h2><div class='cards'>{''.join(cards)}</div></section>"


def _bar_rows(rows: list[tuple[str, int, str]], total: int) -> str:
    width, bar_h = 640, 22
    top = max([n for _, n, _ in rows] + [1])
    svg = [f"<svg width='{width}' height='{bar_h * len(rows) + 4}' role='img' aria-label='counts by outcome'>"]
    for i, (label, count, colour) in enumerate(rows):
        y = i * bar_h
        length = 360 * count / top
        svg.append(f"<text x='0' y='{y + 15}' font-size='12'>{escape(label)}</text>")
        svg.append(f"<rect x='190' y='{y + 3}' width='{length:.1f}' height='{bar_h - 7}' fill='{colour}' rx='2'/>")
        pct = f" ({100 * count / total:.1f}%)" if total else ""
        svg.append(f"<text x='{196 + length:.1f}' y='{y + 15}' font-size='12'>{count}{pct}</text>")
    svg.append("</svg>")
    return "".join(svg)


def _reasons(t: dict) -> str:
    rows = [
        ("kept: web caption", t["kept_web"], WEB_COLOUR),
        ("kept: synthetic caption", t["kept_synthetic"], SYNTHETIC_COLOUR),
    ]
    rows += [(f"dropped: {reason}", n, DROP_COLOUR) for reason, n in sorted(t["dropped"].items(), key=lambda r: -r[1])]
    notes = "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in sorted(t["sample_errors"].items()))
    table = f"<p class='muted'>Notes on samples (kept or not):</p><table>{notes}</table>" if notes else ""
    return f"<section><h2>What happened to each sample</h2>{_bar_rows(rows, t['input'])}{table}</section>"


ITM_TEXTS = (
    "ITM scores",
    "ITM score: the filter's probability that caption and image match",
    "The ITM head reads image and caption together and gives the probability that they match "
    "(0: unrelated, 1: a match).",
)
SIMILARITY_TEXTS = (
    "Similarities",
    "similarity: the cosine of the image and caption embeddings",
    "The contrastive similarity compares an image embedding with a caption embedding computed apart "
    "(CLIP, or BLIP's ITC head): -1 to 1, higher is closer.",
)


def _histogram(h: dict, title: str, axis: str, meaning: str, low: float = 0.0) -> str:
    """Web and synthetic bars over [low, 1], with the threshold when the policy used this score."""
    width, height, left, bottom = 640, 220, 40, 30
    bins = len(h["web"])
    top = max(h["web"] + h["synthetic"] + [1])
    plot_w, plot_h = width - left - 10, height - bottom - 10
    step = plot_w / bins
    svg = [
        f"<svg width='{width}' height='{height + 20}' role='img' aria-label='{escape(title)} histograms'>",
        f"<line x1='{left}' y1='{10 + plot_h}' x2='{left + plot_w}' y2='{10 + plot_h}' stroke='#999'/>",
    ]
    for i in range(bins):
        for offset, counts, colour in ((0.05, h["web"], WEB_COLOUR), (0.5, h["synthetic"], SYNTHETIC_COLOUR)):
            bar = plot_h * counts[i] / top
            x = left + i * step + offset * step
            svg.append(
                f"<rect x='{x:.1f}' y='{10 + plot_h - bar:.1f}' width='{step * 0.45:.1f}' height='{bar:.1f}' "
                f"fill='{colour}'><title>{counts[i]}</title></rect>"
            )
    for tick in range(0, 11, 2):
        x = left + plot_w * tick / 10
        label = low + (1 - low) * tick / 10
        svg.append(f"<text x='{x:.1f}' y='{height - 10}' font-size='11' text-anchor='middle'>{label:.1f}</text>")
    svg.append(f"<text x='{left - 6}' y='18' font-size='11' text-anchor='end'>{top}</text>")
    centre = f"x='{left + plot_w / 2:.1f}' y='{height + 14}'"
    svg.append(f"<text {centre} font-size='12' text-anchor='middle'>{escape(axis, quote=False)}</text>")
    svg.append(
        f"<text x='12' y='{10 + plot_h / 2:.1f}' font-size='12' text-anchor='middle' "
        f"transform='rotate(-90 12 {10 + plot_h / 2:.1f})'>captions</text>"
    )
    if h.get("threshold") is not None:
        x = left + plot_w * (float(h["threshold"]) - low) / (1 - low)
        svg.append(f"<line x1='{x:.1f}' y1='6' x2='{x:.1f}' y2='{10 + plot_h}' stroke='#111' stroke-dasharray='5,4'/>")
        svg.append(f"<text x='{x + 4:.1f}' y='16' font-size='11'>threshold {h['threshold']}</text>")
    svg.append("</svg>")
    legend = (
        f"<div class='legend muted'><i style='background:{WEB_COLOUR}'></i>web captions"
        f"<i style='background:{SYNTHETIC_COLOUR}'></i>synthetic captions</div>"
    )
    if h.get("threshold") is not None:
        meaning += " Under the policy, the best candidate of a sample must reach the threshold."
    heading = f"<h2>{escape(title)}</h2><p class='muted'>{escape(meaning, quote=False)}</p>"
    return f"<section>{heading}{''.join(svg)}{legend}</section>"


def _evaluation(evaluation: dict | None, ablation: list[dict] | None) -> str:
    """The demo world's quality against ground truth, when ``capfilt eval`` (or ``run demo``) recorded it."""
    if not evaluation:
        return ""
    figures = [
        ("kept caption accuracy", evaluation["kept_accuracy"]),
        ("yield", evaluation["yield"]),
        ("clean yield", evaluation["clean_yield"]),
        ("web caption accuracy (before)", evaluation["web_accuracy"]),
    ]
    cards = "".join(_card(f"{value:.3f}", label) for label, value in figures)
    table = ""
    if ablation:
        head = "<tr><th>data</th><th>kept</th><th>kept accuracy</th><th>yield</th><th>clean yield</th></tr>"
        body = "".join(
            f"<tr><td>{escape(str(row['name']))}</td><td>{row['kept']}</td><td>{row['accuracy']:.3f}</td>"
            f"<td>{row['yield']:.3f}</td><td>{row['clean_yield']:.3f}</td></tr>"
            for row in ablation
        )
        table = f"<p class='muted'>BLIP Table 1's rows on this input:</p><table>{head}{body}</table>"
    return f"<section><h2>Against the demo world's ground truth</h2><div class='cards'>{cards}</div>{table}</section>"


def _retrieval(result: dict | None) -> str:
    """Recall@1 of the dual encoders ``capfilt eval --retrieval`` trained on each version of the data."""
    if not result or not result.get("rows"):
        return ""
    video = result.get("media") == "video"
    i = "v" if video else "i"
    keys = ("image_to_text@1", "text_to_image@1", "mean_recall@1")
    head = (
        "<tr><th>training data</th><th>pairs</th>"
        + "".join(f"<th>{label}</th>" for label in (f"{i}→t R@1", f"t→{i} R@1", "mean R@1"))
        + "</tr>"
    )
    body = "".join(
        f"<tr><td>{escape(str(row['name']))}</td><td>{row['samples']}</td>"
        + "".join(f"<td>{100 * row['mean'][k]:.1f} ± {100 * row['spread'][k]:.1f}</td>" for k in keys)
        + "</tr>"
        for row in result["rows"]
    )
    what = "clips" if video else "images"
    sampling = f", {result.get('frame_choice')} frames, meanP" if video else ""
    note = (
        f"A dual encoder trained from scratch on each version of the data; Recall@1 in percent on "
        f"{result['heldout']['pairs']} held-out {escape(str(result['world']))}-world {what} no run has seen, "
        f"mean ± sd over seeds {escape(str(result['seeds']))}{escape(sampling)}."
    )
    return f"<section><h2>Retrieval (BLIP Table 1)</h2><p class='muted'>{note}</p><table>{head}{body}</table></section>"


def _deduplication(result: dict | None) -> str:
    """How many injected copies ``select --dedup`` removed, when ``capfilt eval`` measured it on the demo world."""
    if not result:
        return ""
    # Reports measured before scenes were also counted by their description have no such figures.
    same = result.get("wrong_merges_same_description")
    renders = "" if same is None else f"; {same} of them another render of the same caption"
    figures = [
        (f"{result['recall']:.3f}", f"dedup recall ({result['found']} of {result['copies']} copies)"),
        (str(result["wrong_merges"]), f"wrong merges (a copy of another group's sample{renders})"),
        (str(result["groups_removed"]), "groups removed whole"),
    ]
    if "descriptions_lost" in result:
        figures.append((str(result["descriptions_lost"]), f"of {result['descriptions']} descriptions lost"))
    cards = "".join(_card(value, label) for value, label in figures)
    return f"<section><h2>Deduplication against the injected copies</h2><div class='cards'>{cards}</div></section>"


def _shards(shards: dict, total: int) -> str:
    if not shards:
        return ""
    head = "<tr><th>shard</th><th>status</th><th>input</th><th>kept</th></tr>"
    body = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(s['status'])}</td><td>{s['input']}</td><td>{s['kept']}</td></tr>"
        for name, s in shards.items()
    )
    more = f"<p class='muted'>{len(shards)} of {total} shards listed.</p>" if len(shards) < total else ""
    return f"<section><h2>Shards</h2><table>{head}{body}</table>{more}</section>"


def _score(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def _duplicate_groups(examples: list[dict]) -> str:
    """Copies that ``select --dedup`` removed, each after the copy kept in its place."""
    if not examples:
        return ""
    rows = []
    for e in examples:
        kept = e["kept_copy"]
        pictures = [(kept, "kept copy"), (e, "duplicate")]
        cells = "".join(
            (
                f"<img alt='{escape(p['key'])}' src='{p['thumbnail']}'>"
                if p.get("thumbnail")
                else "<div class='noimg'>no image</div>"
            )
            + f"<div class='muted'>{label}: {escape(p['shard'])}/{escape(p['key'])}</div>"
            for p, label in pictures
        )
        rows.append(f"<div class='ex'>{cells}</div>")
    return f"<section><h2>Duplicate groups</h2><div class='grid'>{''.join(rows)}</div></section>"


def _examples(title: str, examples: list[dict]) -> str:
    if not examples:
        return f"<section><h2>{title}</h2><p class='muted'>None.</p></section>"
    cards = []
    for e in examples:
        video = e.get("media") == "video"
        image = (
            f"<img {'class=strip ' if video else ''}alt='{escape(e['key'])}' src='{e['thumbnail']}'>"
            if e.get("thumbnail")
            else f"<div class='noimg'>no {'frames' if video else 'image'}</div>"
        )
        clip = (
            f" <span class='muted'>{e['frames']} frames of {e['duration']:.1f} s</span>"
            if video and e.get("frames")
            else ""
        )
        kept = e["status"] == "kept"
        badge = f"<span class='badge {'kept' if kept else 'dropped'}'>{escape(e['status'])}</span>"
        items = []
        web = e.get("web") or {}
        chosen_web = kept and e.get("source") == "web"
        items.append(
            f"<li class='{'chosen' if chosen_web else ''}'>web: {escape(web.get('text') or '(none)')} "
            f"<span class='muted'>{_score(web.get('score'))}</span></li>"
        )
        synthetic: dict[str, list] = {}  # sampling repeats captions: each text once, with how often it came
        for s in e.get("synthetic") or []:
            synthetic.setdefault(s["text"], [s["score"], 0])[1] += 1
        for text, (score, times) in synthetic.items():
            chosen = kept and e.get("source") == "synthetic" and text == e.get("caption")
            repeat = f" <span class='muted'>×{times}</span>" if times > 1 else ""
            items.append(
                f"<li class='{'chosen' if chosen else ''}'>synthetic: {escape(text)}{repeat} "
                f"<span class='muted'>{_score(score)}</span></li>"
            )
        error = f"<div class='muted'>{escape(e['error'])}</div>" if e.get("error") else ""
        cards.append(
            f"<div class='ex{' video' if video else ''}'>{image}<div>{badge} <span class='muted'>{escape(e['shard'])}/"
            f"{escape(e['key'])}</span>{clip}<ul>{''.join(items)}</ul>{error}</div></div>"
        )
    return f"<section><h2>{title}</h2><div class='grid'>{''.join(cards)}</div></section>"
