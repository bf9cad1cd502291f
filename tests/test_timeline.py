"""The run timeline: built from a run, shown in the terminal (rich) and as standalone HTML.

The HTML is checked twice: structurally (always: one page, inline SVG and CSS, nothing fetched,
every lane and mark present) and in a real browser (headless Chromium renders it; the screenshot
must show the fault, timeout and delivery colours). The browser test skips, saying why, when no
Chromium is installed (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from acp_sim.scenario import load_scenario
from acp_sim.timeline import AGENT_LANE, COLORS, Axis, Event, Lane, Timeline, render_html, render_rich
from pytest_acp.bugs import CATALOG
from pytest_acp.reference import bridge
from pytest_acp.scenarios.run import ScenarioResult, run_scenario

REPO = Path(__file__).resolve().parent.parent
SHOWCASE = REPO / "scenarios" / "hang-cancel-crash-on-one-connection.yaml"


@pytest.fixture(scope="module")
def bleeding() -> ScenarioResult:
    """The showcase scenario against a bridge that delivers b's chunks to a (and loses b's first)."""
    return run_scenario(
        load_scenario(SHOWCASE),
        CATALOG["shared_continuation"].bridge,
        bridge="pytest_acp.bugs:shared_continuation",
    )


@pytest.fixture(scope="module")
def passing() -> ScenarioResult:
    return run_scenario(load_scenario(SHOWCASE), bridge)  # type: ignore[arg-type]


# -- what the timeline says ---------------------------------------------------------------------------


def test_lanes_are_the_sessions_and_sent_chunks_pair_with_their_deliveries(passing: ScenarioResult) -> None:
    timeline = passing.timeline()
    assert [lane.name for lane in timeline.lanes] == [AGENT_LANE, "a", "b"]
    assert timeline.lanes[2].title.startswith("b: agent#0 ")
    assert "agent#1 " in timeline.lanes[2].title
    assert timeline.verdict == "passed"
    assert timeline.notes == []
    for lane in ("a", "b"):
        sent = {e.key for e in timeline.events if e.lane == lane and e.kind == "sent" and e.key}
        delivered = [e for e in timeline.events if e.lane == lane and e.kind == "delivered" and e.key]
        assert delivered
        assert all(e.key in sent and e.flag is None for e in delivered)
    kinds = {(e.lane, e.kind, e.label) for e in timeline.events}
    assert ("a", "timeout", "timeout") in kinds
    assert ("b", "end", "end cancelled") in kinds
    assert (AGENT_LANE, "fault", "crash") in kinds
    assert (AGENT_LANE, "fault", "agent#0 exit (crash)") in kinds
    assert (AGENT_LANE, "agent", "agent#1 started (acp-sim#1)") in kinds
    # b's late chunk after the cancel was sent and, rightly, not delivered
    assert [e.label for e in timeline.events if e.flag == "missing" and e.lane == "b"] != []


def test_bleed_and_loss_are_flagged_and_violations_marked(bleeding: ScenarioResult) -> None:
    timeline = bleeding.timeline()
    assert timeline.verdict == "failed"
    foreign = [e for e in timeline.events if e.flag == "foreign"]
    assert foreign
    assert all(e.lane == "a" and e.key and e.key.startswith(f"[{_sid(bleeding, 'b')}") for e in foreign)
    marks = [e for e in timeline.events if e.kind == "violation"]
    assert {e.label for e in marks} == {"P1 first chunk delivered", "P3 no cross-session bleed"}
    assert timeline.notes[0].startswith("P1 first chunk delivered: the first chunk '[")
    assert timeline.notes[:5] == [str(v) for v in bleeding.failures[:5]]


def _sid(result: ScenarioResult, key: str) -> str:
    title = next(lane.title for lane in result.timeline().lanes if lane.name == key)
    return title.split("agent#0 ")[1][:8]


def test_the_axis_cuts_quiet_stretches_and_keeps_order() -> None:
    axis = Axis([0.0, 0.5, 1.0, 31.0, 31.25], x0=100, scale=100, gap=2.0, gap_px=36)
    assert [axis(t) for t in (0.0, 0.5, 1.0, 31.0, 31.25)] == [100, 150, 200, 236, 261]
    assert axis(16.0) == 218  # inside the cut: halfway
    assert axis.breaks == [(218.0, 1.0, 31.0)]
    assert axis.width == 161
    fitted = Axis.fit([0.0, 2.0, 4.0, 900.0], x0=0)
    assert fitted(900.0) - fitted(4.0) == fitted.gap_px  # the drain at the end costs one cut


def test_the_terminal_timeline_has_a_table_per_session(bleeding: ScenarioResult) -> None:
    console = Console(record=True, width=160, color_system=None)
    console.print(render_rich(bleeding.timeline()))
    text = console.export_text()
    assert "scenario hang-cancel-crash-on-one-connection" in text
    for title in [lane.title for lane in bleeding.timeline().lanes]:
        assert title in text
    assert "FROM ANOTHER SESSION" in text
    assert "not delivered" in text
    assert "FAILED" in text
    # a chunk delivered in the instant it was sent shares its row: sent and delivered side by side
    row = next(line for line in text.splitlines() if "timeout" in line and "│" in line)
    assert row.strip().startswith("│")


# -- the HTML, structurally ----------------------------------------------------------------------------


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def count(self, tag: str, cls: str | None = None) -> int:
        return sum(
            1 for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split())
        )


def test_the_html_is_one_standalone_page_with_every_lane_and_mark(bleeding: ScenarioResult) -> None:
    page_text = render_html(bleeding.timeline())
    page = Page()
    page.feed(page_text)
    tags = {t for t, _ in page.tags}
    assert page_text.startswith("<!DOCTYPE html>")
    assert page.count("svg") == 1
    assert page.count("style") == 1
    # nothing to fetch: no script, stylesheet link, image, frame or font, no url() in the CSS
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "audio", "video", "source"}
    assert not [a for _, attrs in page.tags for name, a in attrs.items() if name in ("src", "href")]
    assert "url(http" not in page_text
    assert "@import" not in page_text
    text = " ".join(page.text)
    for lane in bleeding.timeline().lanes:
        assert lane.title in text  # the event tables, one per lane
    assert page.count("g", "violation") >= 2
    assert page.count("g", "timeout") == 1
    assert page.count("g", "fault") >= 3  # hang, crash, exit
    assert page.count("g", "delivered") == sum(1 for e in bleeding.timeline().events if e.kind == "delivered")
    assert page.count("line", "link") > 0
    assert page.count("span", "failed") == 1
    assert page.count("g", "break") >= 1  # the 15 s of silence before the timeout, cut


def test_chunk_text_is_escaped() -> None:
    timeline = Timeline(
        "t <&> 'q'",
        [Lane("a", "a")],
        [
            Event(0.0, "a", "sent", "chunk '<script>alert(1)</script>'", key="<x>"),
            Event(0.1, "a", "delivered", "x", key="<x>"),
        ],
    )
    text = render_html(timeline)
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert "<title>t &lt;&amp;&gt; &#x27;q&#x27;</title>" in text


# -- the HTML, in a browser ----------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit PNG (what Chromium writes), without Pillow."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8
    assert color in (2, 6)
    bpp = 3 if color == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line) if bpp == 3 else bytes(v for j, v in enumerate(line) if j % 4 != 3))
        prev = line
    return width, height, rows


def colour_counts(rows: list[bytes]) -> Counter[bytes]:
    counts: Counter[bytes] = Counter()
    for row in rows:
        counts.update(row[i : i + 3] for i in range(0, len(row), 3))
    return counts


def count_colour(counts: Counter[bytes], hex_colour: str, tolerance: int = 12) -> int:
    """Pixels within ``tolerance`` of the colour (anti-aliased edges blend into the background)."""
    want = bytes.fromhex(hex_colour.lstrip("#"))
    return sum(n for rgb, n in counts.items() if all(abs(rgb[k] - want[k]) <= tolerance for k in range(3)))


def test_headless_chromium_renders_the_timeline(bleeding: ScenarioResult, tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip(
            "no Chromium on PATH (Debian: apt-get install -y chromium); the structural check still ran"
        )
    page = tmp_path / "timeline.html"
    page.write_text(render_html(bleeding.timeline()), encoding="utf-8")
    png = tmp_path / "timeline.png"
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    env = {**os.environ, "HOME": str(tmp_path)}
    subprocess.run(
        [browser, *flags, f"--screenshot={png}", "--window-size=1100,640", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
        env=env,
    )
    width, height, rows = read_png(png)
    assert (width, height) == (1100, 640)
    counts = colour_counts(rows)
    # what the marks look like on screen: red faults and violations, the orange timeout, green
    # deliveries and the teal of what the agent sent
    for kind, at_least in (("fault", 40), ("timeout", 20), ("delivered", 40), ("sent", 40)):
        assert count_colour(counts, COLORS[kind]) >= at_least, f"no {kind} mark on screen"
