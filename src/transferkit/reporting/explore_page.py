"""``explore.html``: one self-contained page of an explore run (no network, no files beside it).

The map is an SVG drawn by a short inline script from the points embedded as JSON: colour by cluster, label or
flag, and hovering a point shows its row, split, label, cluster, flags and what the modality shows of it (a
thumbnail, a text, a spectrogram). Below it: clusters (size, labels, distinctive terms, the examples nearest the
centre), duplicate groups, outliers, label issues, suggested labels and how each figure was computed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from transferkit._io import atomic_write_text
from transferkit._version import __version__
from transferkit.modalities import get_modality
from transferkit.reporting.report import _CSS, _e, _table

PAGE_FILE = "explore.html"
GENERATOR_MARK = '<meta name="generator" content="transferkit explore">'
#: Bytes of hover examples (thumbnails, texts) embedded at most; points beyond show their row only.
HOVER_BYTES = 6 * 1024 * 1024
#: Rows shown in each ranked table of the page (the CSV holds every example).
TABLE_ROWS = 30

_MAP_CSS = """
#points-map{width:100%;height:560px;border:1px solid #e5e7eb;background:#fff;display:block}
#tip{position:fixed;pointer-events:none;background:#fff;border:1px solid #94a3b8;border-radius:6px;padding:6px 8px;
font-size:.8rem;max-width:320px;box-shadow:0 2px 8px rgba(0,0,0,.15);display:none;z-index:5}
#tip img{max-width:120px;max-height:120px;display:block;image-rendering:pixelated} .legend span{margin-right:10px}
"""

_MAP_SCRIPT = """
(function(){
var data=JSON.parse(document.getElementById('points').textContent);
var svg=document.getElementById('points-map'),tip=document.getElementById('tip'),NS='http://www.w3.org/2000/svg';
var pal=['#2563eb','#dc2626','#16a34a','#9333ea','#ea580c','#0891b2','#ca8a04','#db2777','#4b5563','#65a30d',
'#7c3aed','#0d9488','#b91c1c','#1d4ed8','#a16207','#be185d','#15803d','#6d28d9','#c2410c','#0e7490'];
var xs=data.points.map(function(p){return p.x}),ys=data.points.map(function(p){return p.y});
var x0=Math.min.apply(null,xs),x1=Math.max.apply(null,xs),y0=Math.min.apply(null,ys),y1=Math.max.apply(null,ys);
var W=1000,H=560,m=12;svg.setAttribute('viewBox','0 0 '+W+' '+H);
function sx(v){return m+(W-2*m)*(x1>x0?(v-x0)/(x1-x0):.5)}function sy(v){return H-m-(H-2*m)*(y1>y0?(v-y0)/(y1-y0):.5)}
var keys={};function colour(p,by){var k=by==='cluster'?String(p.cluster):by==='label'?String(p.label):
(p.issue?'label issue':p.dup?'duplicate':p.out?'outlier':'none');if(!(k in keys))keys[k]=Object.keys(keys).length;
return k==='none'?'#cbd5e1':pal[keys[k]%pal.length]}
function esc(s){return String(s).replace(/[&<>"']/g,function(c){return '&#'+c.charCodeAt(0)+';'})}
function draw(by){keys={};while(svg.firstChild)svg.removeChild(svg.firstChild);
data.points.forEach(function(p,i){var c=document.createElementNS(NS,'circle');c.setAttribute('cx',sx(p.x));
c.setAttribute('cy',sy(p.y));c.setAttribute('r',p.issue||p.dup||p.out?4:3);c.setAttribute('fill',colour(p,by));
c.setAttribute('fill-opacity','.8');c.setAttribute('data-i',i);svg.appendChild(c)});
document.getElementById('legend').innerHTML=Object.keys(keys).map(function(k){return '<span style="color:'+
(k==='none'?'#94a3b8':pal[keys[k]%pal.length])+'">&#9679; '+esc(k)+'</span>'}).join('')}
svg.addEventListener('mousemove',function(e){var i=e.target.getAttribute&&e.target.getAttribute('data-i');
if(i===null||i===undefined){tip.style.display='none';return}var p=data.points[+i],h='<b>'+esc(p.row)+'</b><br>'+
esc(p.split)+(p.label!==null?' &middot; label '+esc(p.label):'')+' &middot; cluster '+esc(p.cluster)+
(p.dup?'<br>duplicate ('+esc(p.dup)+')':'')+(p.out?'<br>outlier':'')+(p.issue?'<br>label issue ('+
esc(p.issue)+')':'')+(p.suggested?'<br>suggested '+esc(p.suggested):'');var ex=p.example||{};
if(ex.thumbnail&&/^data:image\\/(png|jpeg);base64,/.test(ex.thumbnail))h+='<img alt="" src="'+ex.thumbnail+'">';
if(ex.text)h+='<div>'+esc(ex.text)+'</div>';tip.innerHTML=h;tip.style.display='block';
tip.style.left=(e.clientX+14)+'px';tip.style.top=(e.clientY+14)+'px'});
svg.addEventListener('mouseleave',function(){tip.style.display='none'});
document.getElementById('colour-by').addEventListener('change',function(e){draw(e.target.value)});
draw('cluster');})();
"""


def _drawn(result: Any, max_points: int, seed: int) -> np.ndarray:
    """Rows drawn on the map: all, or a random sample of ``max_points`` with every flagged example in it."""
    n = len(result)
    if n <= max_points:
        return np.arange(n)
    flagged = np.flatnonzero(np.asarray(result.table["outlier"], bool)
                             | (np.asarray(result.table["duplicate_group"]) >= 0)
                             | np.asarray([bool(v) for v in result.table["label_issue"]]))[:max_points // 2]
    rest = np.setdiff1d(np.arange(n), flagged)
    sample = np.random.default_rng(seed).choice(rest, max_points - len(flagged), replace=False)
    return np.sort(np.concatenate([flagged, sample]))


def _points(result: Any, dataset: Any, rows: np.ndarray) -> list[dict[str, Any]]:
    modality = get_modality(dataset.modality)
    t = result.table
    points, spent = [], 0
    for i in rows.tolist():
        point = {"row": t["row_id"][i], "split": t["split"][i], "label": t["label"][i], "cluster": t["cluster"][i],
                 "x": round(float(t["map_x"][i]), 4), "y": round(float(t["map_y"][i]), 4),
                 "dup": t["duplicate_kind"][i], "out": bool(t["outlier"][i]),
                 "issue": f"{t['label_issue_score'][i]:.2f}" if t["label_issue"][i] else "",
                 "suggested": (f"{t['suggested_label'][i]} ({t['suggested_probability'][i]:.2f})"
                               if t["suggested_label"][i] is not None else "")}
        if spent < HOVER_BYTES:
            example = modality.example(dataset.items[i])
            example.pop("audio", None)  # sound stays in the cluster cards; hover shows the picture
            spent += len(json.dumps(example))
            point["example"] = example
        points.append(point)
    return points


def _map_section(result: Any, dataset: Any, max_points: int, seed: int) -> str:
    rows = _drawn(result, max_points, seed)
    data = json.dumps({"points": _points(result, dataset, rows)}).replace("</", "<\\/")
    shown = f"all {len(result):,} examples" if len(rows) == len(result) else \
        f"{len(rows):,} of {len(result):,} examples (every flagged one, the rest at random)"
    return (f"<p class='muted'>{_e(result.facts['map_method'])}; {_e(shown)}. Hover a point for the example.</p>"
            "<label>colour by <select id='colour-by'><option value='cluster'>cluster</option>"
            "<option value='label'>label</option><option value='flag'>flag</option></select></label>"
            "<div id='legend' class='legend muted'></div><svg id='points-map' role='img' aria-label='map of the examples'>"
            f"</svg><div id='tip'></div><script type='application/json' id='points'>{data}</script>"
            f"<script>{_MAP_SCRIPT}</script>")


def _clusters_section(result: Any, modality: Any) -> str:
    cards = [f"<p class='muted'>{_e(result.facts['cluster_method'])}</p>"]
    for c in result.clusters:
        name = "no cluster (noise)" if c["id"] == -1 else f"cluster {c['id']}"
        labels = ", ".join(f"{k}: {v}" for k, v in list(c["labels"].items())[:6])
        terms = ", ".join(c["terms"])
        cards.append(f"<h3>{_e(name)} &middot; {c['size']:,} examples</h3>"
                     + (f"<p>labels: {_e(labels)}</p>" if labels else "")
                     + (f"<p>distinctive terms: {_e(terms)}</p>" if terms else "")
                     + modality.examples_html(c["examples"], _e))
    return "".join(cards)


def _duplicates_section(result: Any) -> str:
    t = result.table
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(t["duplicate_group"]):
        if g >= 0:
            groups.setdefault(g, []).append(i)
    if not groups:
        return f"<p>No duplicates (cosine similarity at or above {result.facts['duplicate_similarity']}).</p>"
    ordered = sorted(groups.values(), key=lambda members: -len({t["split"][i] for i in members}))
    rows = [[g + 1, len(m), ", ".join(sorted({t['duplicate_kind'][i] for i in m})),
             ", ".join(sorted({t['split'][i] for i in m})), "; ".join(t["row_id"][i] for i in m[:6])]
            for g, m in enumerate(ordered[:TABLE_ROWS])]
    return (f"<p>{len(groups):,} groups; {result.facts['cross_split_groups']:,} span splits (listed first: the same "
            f"example in training and test data inflates test scores). {_e(result.facts['neighbour_search'])}.</p>"
            + _table(["#", "examples", "kind", "splits", "rows"], rows))


def _ranked_section(result: Any, dataset: Any, score: str, flag: str, extra: str, empty: str) -> str:
    t = result.table
    order = [i for i in np.argsort([-(s if s is not None else -1.0) for s in t[score]]) if t[flag][i]]
    if not order:
        return f"<p>{_e(empty)}</p>"
    modality = get_modality(dataset.modality)
    head = ["row", "split", "label", score.replace("_", " "), "example"]
    body = "".join(f"<tr><td>{_e(t['row_id'][i])}</td><td>{_e(t['split'][i])}</td><td>{_e(t['label'][i])}</td>"
                   f"<td class='num'>{t[score][i]:.3f}</td><td>"
                   f"{modality.example_cell_html(modality.example(dataset.items[i]), _e)}</td></tr>"
                   for i in order[:TABLE_ROWS])
    return (f"<p>{len(order):,} flagged. {_e(extra)}</p><table><thead><tr>"
            + "".join(f"<th>{_e(h)}</th>" for h in head) + f"</tr></thead><tbody>{body}</tbody></table>")


def _suggestions_section(result: Any) -> str:
    t = result.table
    rows = sorted((i for i, s in enumerate(t["suggested_label"]) if s is not None),
                  key=lambda i: -t["suggested_probability"][i])
    return (f"<p>{len(rows):,} unlabelled examples; most confident first (all in explore.csv).</p>"
            + _table(["row", "suggested label", "probability"],
                     [[t["row_id"][i], t["suggested_label"][i], t["suggested_probability"][i]] for i in rows[:TABLE_ROWS]]))


def explore_page(result: Any, dataset: Any, *, max_points: int = 5000, seed: int = 0) -> str:
    """The page's HTML for ``result`` of ``dataset`` (the explored examples, every split joined)."""
    f = result.facts
    modality = get_modality(dataset.modality)
    cards = [("examples", f"{f['examples']:,}"), ("clusters", f["cluster_count"]),
             ("with a duplicate", f"{f['exact_duplicates'] + f['near_duplicates']:,}"), ("outliers", f["outliers"])]
    if f.get("label_method"):
        cards.append(("label issues", f"{f['label_issues']:,}"))
    sections = [("overview", "Overview", "<div class='cards'>" + "".join(
        f"<div class='card'><b>{_e(v)}</b>{_e(k)}</div>" for k, v in cards) + "</div>"),
        ("map", "Map", _map_section(result, dataset, max_points, seed)),
        ("clusters", "Clusters", _clusters_section(result, modality)),
        ("duplicates", "Duplicates", _duplicates_section(result)),
        ("outliers", "Outliers", _ranked_section(result, dataset, "outlier_score", "outlier", f["outlier_rule"] + ".",
                                                 "No outliers."))]
    if f.get("label_method"):
        sections.append(("label-issues", "Label issues", _ranked_section(
            result, dataset, "label_issue_score", "label_issue",
            f"Ranked by the probability that the given label is wrong; {f['label_method']}.", "No label issues found.")))
    if f.get("suggested"):
        sections.append(("suggested", "Suggested labels", _suggestions_section(result)))
    facts = {k: v for k, v in f.items() if k not in ("silhouette",)}
    sections.append(("method", "How it was computed", f"<pre>{_e(json.dumps(facts, indent=2, default=str))}</pre>"))
    nav = "".join(f'<a href="#{key}">{_e(heading)}</a>' for key, heading, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{_e(heading)}</h2>{content}</section>' for key, heading, content in sections)
    title = f"explore: {dataset.origin}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{GENERATOR_MARK}"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "media-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{_e(title)}</title><style>{_CSS}{_MAP_CSS}</style></head><body><main>"
            f"<h1>{_e(title)}</h1><p class='muted'>backbone {_e(f.get('backbone', ''))} · transferkit "
            f"{_e(__version__)}</p><nav>{nav}</nav>{body}</main></body></html>\n")


def write_explore_page(result: Any, dataset: Any, folder: Path, *, max_points: int = 5000, seed: int = 0) -> Path:
    """Write :func:`explore_page` as ``explore.html`` in ``folder``; its path."""
    path = Path(folder) / PAGE_FILE
    atomic_write_text(path, explore_page(result, dataset, max_points=max_points, seed=seed))
    return path
