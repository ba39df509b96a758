//! The dashboard's widgets: each draws one panel from the model and nothing else.

pub mod curves;
pub mod detail;
pub mod footer;
pub mod gap;
pub mod header;
pub mod overlay;
pub mod table;

use ratatui::text::Line;

/// The first of `variants` (longest first) that fits in `width`, else the last one, clipped.
pub(crate) fn fit(variants: Vec<Line<'_>>, width: u16) -> Line<'_> {
    let count = variants.len();
    for (i, line) in variants.into_iter().enumerate() {
        if line.width() <= width as usize || i + 1 == count {
            return line;
        }
    }
    Line::default()
}

/// Items laid out left to right, wrapped onto as many lines as they need within `width`.
pub(crate) fn wrap_items<'a>(
    items: Vec<Vec<ratatui::text::Span<'a>>>,
    width: u16,
    gap: usize,
) -> Vec<Line<'a>> {
    let mut lines: Vec<Line<'a>> = Vec::new();
    let mut current: Vec<ratatui::text::Span<'a>> = Vec::new();
    let mut used = 0usize;
    for item in items {
        let w: usize = item.iter().map(|s| s.width()).sum();
        if used > 0 && used + gap + w > width as usize {
            lines.push(Line::from(std::mem::take(&mut current)));
            used = 0;
        }
        if used > 0 {
            current.push(ratatui::text::Span::raw(" ".repeat(gap)));
            used += gap;
        }
        current.extend(item);
        used += w;
    }
    if !current.is_empty() {
        lines.push(Line::from(current));
    }
    lines
}
