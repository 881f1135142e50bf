// The dashboard's layout on the page: panel sizes (drag a splitter, or focus it
// and use the arrow keys) and the columns each table shows (the "Columns"
// pickers). Sizes are the workspace layout's panels, in percent of the page's
// width (watchlist, chart, ticket) or height (blotters); the blotters' columns
// are its `columns`; the watchlist's are the watchlist's own.
import * as fmt from "./format.js";

const el = fmt.el;
const SPLITS = [
  { id: "split-watchlist", panel: "watchlist", element: "watchlist-panel", axis: "x", grows: 1, prop: "--wl-width", min: 12, max: 60 },
  { id: "split-ticket", panel: "ticket", element: "ticket-panel", axis: "x", grows: -1, prop: "--ticket-width", min: 12, max: 40 },
  { id: "split-blotter", panel: "blotters", element: "blotter-panel", axis: "y", grows: -1, prop: "--blotter-height", min: 10, max: 75 },
];
const CHART_MIN = 25; // percent of the width the chart always keeps
const round = (value) => Math.round(value * 10) / 10;

export class PanelSizes {
  constructor({ main, panels, onChange }) {
    this.main = main;
    this.panels = (Array.isArray(panels) ? panels : []).map((p) => ({ ...p }));
    this.onChange = onChange;
    for (const split of SPLITS) {
      const handle = document.getElementById(split.id);
      const size = this.size(split.panel);
      if (size !== null) this.apply(split, size);
      this.describe(split);
      handle.addEventListener("pointerdown", (event) => this.drag(split, handle, event));
      handle.addEventListener("keydown", (event) => this.key(split, event));
    }
  }

  size(id) {
    const panel = this.panels.find((p) => p.id === id);
    return panel && Number.isFinite(Number(panel.size)) ? Number(panel.size) : null;
  }

  // The size as drawn (a panel the layout does not size yet has the stylesheet's); null while hidden (a closed ticket).
  measured(split) {
    const box = this.main.getBoundingClientRect();
    const rect = document.getElementById(split.element).getBoundingClientRect();
    const drawn = split.axis === "x" ? rect.width : rect.height;
    return drawn > 0 ? round((drawn / (split.axis === "x" ? box.width : box.height)) * 100) : null;
  }

  current(split) {
    return this.size(split.panel) ?? this.measured(split);
  }

  limits(split) {
    if (split.axis !== "x") return [split.min, split.max];
    const other = SPLITS.find((s) => s.axis === "x" && s !== split);
    return [split.min, Math.max(split.min, Math.min(split.max, 100 - CHART_MIN - (this.current(other) ?? other.min)))];
  }

  apply(split, size) {
    this.main.style.setProperty(split.prop, `${size}%`);
  }

  describe(split) {
    const handle = document.getElementById(split.id);
    const [min, max] = this.limits(split);
    handle.setAttribute("aria-valuemin", String(min));
    handle.setAttribute("aria-valuemax", String(max));
    handle.setAttribute("aria-valuenow", String(this.current(split) ?? min));
  }

  set(split, value) {
    const [min, max] = this.limits(split);
    const size = round(Math.min(max, Math.max(min, value)));
    const upsert = (id, value) => {
      const panel = this.panels.find((p) => p.id === id);
      if (panel) panel.size = value;
      else this.panels.push({ id, kind: id, size: value });
    };
    upsert(split.panel, size);
    this.apply(split, size);
    if (split.axis === "x") {
      // The chart takes the rest of the width: kept in the layout for other readers (once both sides are known).
      const [wl, ticket] = ["watchlist", "ticket"].map((id) => this.current(SPLITS.find((s) => s.panel === id)));
      if (wl !== null && ticket !== null) {
        for (const [id, value] of [["watchlist", wl], ["ticket", ticket]]) if (this.size(id) === null) upsert(id, value);
        for (const s of SPLITS.filter((s) => s.axis === "x")) this.apply(s, this.size(s.panel));
        upsert("chart", round(100 - wl - ticket));
      }
    }
    for (const s of SPLITS) this.describe(s);
    return size;
  }

  save() {
    this.onChange(this.panels.map((p) => ({ ...p })));
  }

  drag(split, handle, event) {
    if (event.button !== 0) return;
    event.preventDefault();
    handle.setPointerCapture(event.pointerId);
    handle.classList.add("dragging");
    const move = (e) => {
      const box = this.main.getBoundingClientRect();
      const value =
        split.axis === "x"
          ? split.grows > 0
            ? ((e.clientX - box.left) / box.width) * 100
            : ((box.right - e.clientX) / box.width) * 100
          : ((box.bottom - e.clientY) / box.height) * 100;
      this.set(split, value);
    };
    const up = () => {
      handle.removeEventListener("pointermove", move);
      handle.removeEventListener("pointerup", up);
      handle.removeEventListener("pointercancel", up);
      handle.classList.remove("dragging");
      this.save();
    };
    handle.addEventListener("pointermove", move);
    handle.addEventListener("pointerup", up);
    handle.addEventListener("pointercancel", up);
  }

  // Arrow keys move the splitter (Shift: by 5 %); Home/End: to its limits.
  key(split, event) {
    const keys = split.axis === "x" ? { ArrowRight: 1, ArrowLeft: -1 } : { ArrowDown: 1, ArrowUp: -1 };
    const now = this.current(split) ?? split.min;
    let value = null;
    if (event.key in keys) value = now + keys[event.key] * split.grows * (event.shiftKey ? 5 : 1);
    else if (event.key === "Home") value = this.limits(split)[0];
    else if (event.key === "End") value = this.limits(split)[1];
    if (value === null) return;
    event.preventDefault();
    this.set(split, value);
    this.save();
  }
}

// A "Columns" menu: a checkbox per column; at least one stays chosen.
export class ColumnPicker {
  constructor({ details, label, onChange }) {
    this.details = details;
    this.label = label;
    this.onChange = onChange;
    this.box = details.querySelector(".colpicker-list");
    // Esc or a click elsewhere closes it (Esc goes no further: the ticket stays open).
    details.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || !details.open) return;
      event.stopPropagation();
      details.open = false;
      details.querySelector("summary").focus();
    });
    document.addEventListener("click", (event) => {
      if (details.open && !details.contains(event.target)) details.open = false;
    });
  }

  show(columns, chosen) {
    // columns: [[id, label]]; chosen: the ids shown.
    this.details.hidden = !columns.length;
    this.columns = columns;
    this.chosen = [...chosen];
    this.box.replaceChildren(
      el("legend", { class: "sr-only", text: `${this.label} columns` }),
      ...columns.map(([id, label]) => {
        const input = el("input", { type: "checkbox", id: `${this.details.id}-${id}`, "data-col": id });
        input.checked = this.chosen.includes(id);
        input.addEventListener("change", () => this.toggle(id, input));
        return el("label", { for: input.id }, input, el("span", { text: label }));
      }),
    );
  }

  toggle(id, input) {
    if (input.checked) this.chosen = [...this.chosen.filter((c) => c !== id), id];
    else if (this.chosen.length > 1) this.chosen = this.chosen.filter((c) => c !== id);
    else input.checked = true; // the last column stays
    this.onChange([...this.chosen]);
  }
}

// The blotter tables' columns: the headers' data-col in order; hidden ones by a stylesheet rule.
export class BlotterColumns {
  constructor({ columns, onChange }) {
    this.chosen = { ...(columns || {}) };
    this.onChange = onChange;
    this.style = document.head.appendChild(el("style", { id: "blotter-column-style" }));
    this.picker = new ColumnPicker({ details: document.getElementById("blotter-columns"), label: "Table", onChange: (chosen) => this.choose(chosen) });
    this.table = null;
    this.draw();
  }

  headers(table) {
    const pane = document.getElementById(`pane-${table}`);
    return pane ? [...pane.querySelectorAll("thead th")] : [];
  }

  shown(table) {
    const all = this.headers(table).map((th) => th.dataset.col).filter(Boolean);
    const chosen = (this.chosen[table] || []).filter((c) => all.includes(c));
    return chosen.length ? chosen : all;
  }

  showTable(table) {
    this.table = table;
    const columns = this.headers(table)
      .filter((th) => th.dataset.col)
      .map((th) => [th.dataset.col, th.textContent.trim()]);
    this.picker.label = `${table[0].toUpperCase()}${table.slice(1)}`;
    this.picker.show(columns, this.shown(table));
  }

  choose(chosen) {
    const all = this.headers(this.table).map((th) => th.dataset.col).filter(Boolean);
    this.chosen[this.table] = all.filter((c) => chosen.includes(c)); // the table's own order
    this.draw();
    this.onChange({ ...this.chosen });
  }

  draw() {
    const rules = [];
    for (const table of Object.keys(this.chosen)) {
      const shown = this.shown(table);
      this.headers(table).forEach((th, i) => {
        if (th.dataset.col && !shown.includes(th.dataset.col)) rules.push(`#pane-${table} tr:not(.empty) > :nth-child(${i + 1})`);
      });
    }
    this.style.textContent = rules.length ? `${rules.join(",\n")} { display: none; }` : "";
  }
}
