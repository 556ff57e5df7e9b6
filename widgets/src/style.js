// The widget's only CSS, adopted by its shadow root as a constructable stylesheet: no
// <style> element and no style attribute, so a strict style-src CSP needs no exception.
// Theme with the --corrigenda-* custom properties (they inherit into the shadow root) or
// ::part(root|button|panel|input|status). Default colours meet WCAG 2.1 AA in both schemes;
// the scheme follows the OS unless the element has theme="light" or theme="dark".

// --b is the internal name of --corrigenda-bg, and so on.
const light =
  "--b:var(--corrigenda-bg,#fff);--t:var(--corrigenda-fg,#1f2328);--m:var(--corrigenda-muted,#57606a);--a:var(--corrigenda-accent,#0b57d0);--o:var(--corrigenda-on-accent,#fff);--l:var(--corrigenda-border,#6e7781);--e:var(--corrigenda-error,#b3261e);--k:var(--corrigenda-success,#146c2e)";
const dark =
  "color-scheme:dark;--b:var(--corrigenda-bg,#1f2023);--t:var(--corrigenda-fg,#e8eaed);--m:var(--corrigenda-muted,#aeb4bb);--a:var(--corrigenda-accent,#8ab4f8);--o:var(--corrigenda-on-accent,#0b1b33);--l:var(--corrigenda-border,#8b949e);--e:var(--corrigenda-error,#f2b8b5);--k:var(--corrigenda-success,#81c995)";

export const css = `:host{display:block;${light}}
:host([theme=dark]){${dark}}
@media(prefers-color-scheme:dark){:host(:not([theme=light])){${dark}}}
:host([hidden]),[hidden]{display:none!important}
*{box-sizing:border-box}
.r{all:initial;display:block;font:14px/1.45 var(--corrigenda-font,system-ui,sans-serif);color:var(--t);background:var(--b);border:1px solid var(--l);border-radius:var(--corrigenda-radius,8px);padding:8px 10px}
.ask,.o,.acts{display:flex;flex-wrap:wrap;align-items:center;gap:6px}
.q,.h{font-weight:600;margin:0;margin-inline-end:auto}
button,input,textarea{font:inherit;color:var(--t);background:var(--b);border:1px solid var(--l);border-radius:6px;padding:4px 8px;margin:0}
button{cursor:pointer;display:inline-flex;align-items:center;gap:4px;min-height:32px}
button:hover{border-color:var(--a)}
[aria-pressed=true],.pri{background:var(--a);color:var(--o);border-color:var(--a)}
:focus-visible{outline:2px solid var(--a);outline-offset:2px}
.y:before{content:"\\2713"/""}
.n:before{content:"\\2717"/""}
.f{color:var(--m);border-style:dashed}
.p{display:grid;gap:6px;margin-top:8px}
.o{max-height:12em;overflow:auto;padding:2px}
input,textarea{width:100%}
textarea{min-height:3.5em;resize:vertical}
.s{color:var(--m);font-size:13px;margin-top:4px}
[data-state=saved] .s{color:var(--k)}
[data-state=error] .s{color:var(--e)}
@media(prefers-reduced-motion:no-preference){button{transition:background-color .15s,border-color .15s}}`;
