extension HTMLReport {
    /// The report's inline stylesheet: system fonts, a readable measure, zebra tables, figures that
    /// shrink to the page, and print rules that keep figures and table rows whole.
    public static let stylesheet = """
    :root {
      --text: #1f2328; --muted: #57606a; --rule: #d0d7de; --soft: #f6f8fa; --accent: #0072b2;
      --highlight: #fff4d6; --highlight-rule: #e69f00;
    }
    * { box-sizing: border-box; }
    html { -webkit-text-size-adjust: 100%; }
    body {
      margin: 0; background: #ffffff; color: var(--text);
      font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
    }
    main { max-width: 1060px; margin: 0 auto; padding: 32px 28px 56px; }
    header { border-bottom: 2px solid var(--text); margin-bottom: 24px; padding-bottom: 12px; }
    h1 { font-size: 1.75rem; line-height: 1.25; margin: 0 0 6px; letter-spacing: -0.01em; }
    h2 {
      font-size: 1.3rem; margin: 40px 0 12px; padding-bottom: 4px; border-bottom: 1px solid var(--rule);
    }
    p { margin: 0 0 12px; max-width: 80ch; }
    .subtitle { font-size: 1.05rem; color: var(--text); margin: 0 0 2px; }
    .generated, .note { color: var(--muted); font-size: 0.88rem; }
    nav { background: var(--soft); border: 1px solid var(--rule); border-radius: 6px; padding: 10px 18px; }
    nav h2 { font-size: 0.95rem; margin: 0 0 4px; border: 0; padding: 0; }
    nav ol { margin: 0; padding-left: 22px; columns: 2; column-gap: 32px; }
    a { color: var(--accent); text-decoration: none; }
    a:hover { text-decoration: underline; }
    dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 20px; margin: 0 0 16px; }
    dt { font-weight: 600; color: var(--muted); }
    dd { margin: 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
    pre {
      background: var(--soft); border: 1px solid var(--rule); border-radius: 6px; padding: 10px 14px;
      overflow-x: auto; font: 12.5px/1.45 ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace;
    }
    figure { margin: 20px 0 28px; }
    figure svg { display: block; width: 100%; max-width: 100%; height: auto; margin: 0 auto; }
    figcaption { color: var(--muted); font-size: 0.9rem; margin-top: 6px; text-align: center; }
    .label { font-weight: 600; color: var(--text); }
    .table-wrap { overflow-x: auto; margin: 12px 0 24px; }
    table { border-collapse: collapse; font-size: 0.9rem; font-variant-numeric: tabular-nums; min-width: 50%; }
    caption { caption-side: top; text-align: left; color: var(--muted); padding-bottom: 6px; }
    th, td { padding: 5px 12px; text-align: left; vertical-align: top; }
    thead th { border-bottom: 2px solid var(--text); font-weight: 600; white-space: nowrap; }
    tbody tr:nth-child(even) { background: var(--soft); }
    tbody tr { border-bottom: 1px solid #eaeef2; }
    tbody tr.highlight { background: var(--highlight); box-shadow: inset 3px 0 0 var(--highlight-rule); }
    tbody tr.highlight td { font-weight: 600; }
    .num { text-align: right; white-space: nowrap; }
    @media print {
      body { font-size: 11pt; }
      main { max-width: none; padding: 0; }
      nav { display: none; }
      h2 { break-after: avoid; }
      figure, tr, dl, pre { break-inside: avoid; }
      tbody tr:nth-child(even) { background: #f3f3f3; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
      a { color: inherit; }
    }
    """
}
