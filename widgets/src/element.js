// <corrigenda-feedback prediction="…" token="…" [task-type] [labels] [output] [alternatives]
// [lang] [theme]>: the visible widget. All markup lives in an open shadow root; the runtime
// (index.js) owns the queue and the network and calls back settled / retrying / failed.

import { h, list } from "./dom.js";
import { css } from "./style.js";

const PRESSED = "aria-pressed";
const EXPANDED = "aria-expanded";
const button = (props, ...kids) => h("button", { type: "button", part: "button", ...props }, ...kids);

export function defineElement(rt) {
  let sheet;

  class Feedback extends HTMLElement {
    static observedAttributes = ["prediction"];

    connectedCallback() {
      rt.safely(() => {
        if (!this.ui) this.render();
        this.reset();
      });
    }

    disconnectedCallback() {
      rt.safely(() => rt.unobserve(this));
    }

    attributeChangedCallback(_name, old, value) {
      if (this.ui && old !== value) rt.safely(() => this.reset());
    }

    attr(name) {
      return this.getAttribute(name);
    }

    /** A new prediction (or a re-insert): forget the old choice and watch for a view. */
    reset() {
      this.pending = new Set();
      this.viewed = false;
      this.info = null;
      this.born = performance.now();
      this.press();
      this.show("");
      this.close();
      rt.observe(this);
    }

    render() {
      const t = (this.t = rt.strings(this));
      const root = this.attachShadow({ mode: "open" });
      if (!sheet) {
        sheet = new CSSStyleSheet();
        sheet.replaceSync(css);
      }
      root.adoptedStyleSheets = [sheet];
      this.up = button({ class: "y", onclick: () => this.decide("accept") }, t.yes);
      this.down = button({ class: "n", [EXPANDED]: false, onclick: () => this.open() }, t.no);
      this.flagger = button({ class: "f", [EXPANDED]: false, onclick: () => this.open(true) }, t.flag);
      this.panel = h("form", {
        part: "panel",
        class: "p",
        hidden: true,
        onsubmit: (e) => {
          e.preventDefault();
          this.submit();
        },
        onkeydown: (e) => e.key === "Escape" && this.close(true),
      });
      this.live = h("div", { part: "status", class: "s", role: "status" });
      this.ui = h(
        "div",
        { part: "root", class: "r", role: "group", "aria-label": t.title, lang: t.lang },
        h("div", { class: "ask" }, h("span", { class: "q" }, t.ask), this.up, this.down, this.flagger),
        this.panel,
        this.live,
      );
      root.append(this.ui);
    }

    /** Task type, labels, top-k alternatives and output: attributes first, then the server. */
    details() {
      this.info ||= rt.context(this).then((ctx) => ({
        type: this.attr("task-type") || ctx.task_type || "classification",
        labels: list(this.attr("labels") || ctx.labels),
        alternatives: list(this.attr("alternatives") || ctx.alternatives).map((a) => a?.label ?? a),
        output: this.attr("output") ?? ctx.output ?? "",
      }));
      return this.info;
    }

    async open(flag) {
      const info = flag ? {} : await this.details();
      const t = this.t;
      const kids = [];
      this.mode = flag ? "flag" : info.type;
      this.was = list(info.output).sort().join("\n");
      this.choices = [];
      this.editor = this.finder = null;
      if (flag) kids.push(h("p", { class: "h" }, t.why));
      else if (info.type === "text") {
        this.editor = h("textarea", { part: "input" }, String(info.output));
        kids.push(h("label", { class: "p" }, h("span", { class: "h" }, t.edit), this.editor));
      } else if (info.labels.length) kids.push(...this.picker(info));
      this.note = h("textarea", { part: "input", "aria-label": t.comment, placeholder: t.comment });
      kids.push(
        this.note,
        h(
          "div",
          { class: "acts" },
          button({ type: "submit", class: "pri" }, t.send),
          button({ onclick: () => this.close(true) }, t.cancel),
        ),
      );
      this.panel.replaceChildren(...kids);
      this.panel.hidden = false;
      this.opener = flag ? this.flagger : this.down;
      this.expand(!!flag);
      (this.finder || this.choices[0] || this.editor || this.note).focus();
    }

    /** Label buttons, top-k alternatives first; a type-ahead filter when there are many. */
    picker(info) {
      const t = this.t;
      const many = info.type === "multilabel";
      const current = many ? list(info.output) : [String(info.output)];
      const order = [...new Set([...info.alternatives, ...info.labels])].filter(
        (label) => many || !current.includes(label),
      );
      const title = many ? t.many : t.pick;
      this.choices = order.map((label) =>
        button(
          {
            [PRESSED]: many && current.includes(label),
            "data-label": label,
            onclick: (e) => this.choose(e.currentTarget, many),
          },
          label,
        ),
      );
      const kids = [h("p", { class: "h" }, title)];
      if (order.length > 6)
        kids.push(
          (this.finder = h("input", {
            type: "search",
            part: "input",
            "aria-label": t.filter,
            placeholder: t.filter,
            oninput: () => this.narrow(),
            onkeydown: (e) => this.filterKey(e, many),
          })),
        );
      kids.push(
        h("div", { class: "o", role: "group", "aria-label": title }, this.choices),
      );
      return kids;
    }

    visible() {
      return this.choices.filter((b) => !b.hidden);
    }

    narrow() {
      const text = this.finder.value.toLowerCase();
      for (const b of this.choices) b.hidden = !b.dataset.label.toLowerCase().includes(text);
    }

    filterKey(e, many) {
      const first = this.visible()[0];
      if (!first || (e.key !== "Enter" && e.key !== "ArrowDown")) return;
      e.preventDefault();
      if (e.key === "Enter") this.choose(first, many);
      first.focus();
    }

    choose(button, many) {
      const on = button.getAttribute(PRESSED) !== "true";
      if (!many) for (const b of this.choices) b.setAttribute(PRESSED, false);
      button.setAttribute(PRESSED, !many || on);
    }

    submit() {
      const picked = this.choices.filter((b) => b.getAttribute(PRESSED) === "true").map((b) => b.dataset.label);
      let kind = "reject";
      let value = null;
      if (this.mode === "flag") kind = "flag";
      else if (this.editor) value = this.editor.defaultValue !== this.editor.value ? this.editor.value : null;
      else if (this.mode === "multilabel") {
        if (this.choices.length && picked.sort().join("\n") !== this.was) value = picked;
      } else value = picked[0] ?? null;
      if (value !== null) kind = "correct";
      this.decide(kind, value, this.note.value.trim() || undefined);
      this.close(true);
    }

    decide(kind, value = null, comment) {
      this.pending.add(rt.record(this, kind, value, comment));
      if (kind !== "flag") this.press(kind);
      this.show("sending");
    }

    close(refocus) {
      if (this.panel.hidden) return;
      this.panel.hidden = true;
      this.panel.replaceChildren();
      this.expand();
      if (refocus) this.opener.focus();
    }

    /** Mark which of yes / no the user chose (none after a reset). */
    press(kind) {
      this.up.setAttribute(PRESSED, kind === "accept");
      this.down.setAttribute(PRESSED, !!kind && kind !== "accept");
    }

    /** aria-expanded on the button whose panel is open: no (false), report (true), none. */
    expand(flag) {
      this.down.setAttribute(EXPANDED, flag === false);
      this.flagger.setAttribute(EXPANDED, flag === true);
    }

    show(name) {
      this.ui.dataset.state = name;
      this.live.textContent = name ? this.t[name] : "";
    }

    /** The runtime's news about this element's events: "saved", "retry" or "error". */
    update(ids, news) {
      const mine = ids.filter((id) => this.pending.delete(id)).length;
      if (news === "retry" ? this.pending.size : mine && (news === "error" || !this.pending.size))
        this.show(news);
    }
  }

  customElements.define("corrigenda-feedback", Feedback);
}
