//! Colours: a 24-bit palette where the terminal says it has one, the 16 ANSI colours otherwise.

use ratatui::style::{Color, Modifier, Style};

/// Environment variable that forces a palette: `16` or `truecolor`.
pub const COLORS_ENV: &str = "JIZHI_TUI_COLORS";

/// The colours of the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Palette {
    /// Per batch size, smallest first: the colour of its best trial.
    bright: Vec<Color>,
    /// Per batch size: the colour of its other trials.
    dim: Vec<Color>,
    /// The target accuracy line.
    pub target: Color,
    /// The small-batch baseline.
    pub baseline: Color,
    /// Failed trials and error text.
    pub error: Color,
    /// Secondary text (labels, hints).
    pub muted: Color,
    /// Borders of the focused panel.
    pub focus: Color,
}

impl Palette {
    /// The 16 ANSI colours every terminal has.
    pub fn ansi16() -> Self {
        Palette {
            bright: vec![
                Color::LightCyan,
                Color::LightYellow,
                Color::LightMagenta,
                Color::LightGreen,
                Color::LightBlue,
                Color::White,
            ],
            dim: vec![
                Color::Cyan,
                Color::Yellow,
                Color::Magenta,
                Color::Green,
                Color::Blue,
                Color::Gray,
            ],
            target: Color::Red,
            baseline: Color::LightGreen,
            error: Color::LightRed,
            muted: Color::DarkGray,
            focus: Color::LightCyan,
        }
    }

    /// 24-bit colours, chosen to stay apart from each other on dark and light backgrounds.
    pub fn truecolor() -> Self {
        Palette {
            bright: vec![
                Color::Rgb(0x4f, 0xc3, 0xf7),
                Color::Rgb(0xff, 0xc1, 0x07),
                Color::Rgb(0xf0, 0x62, 0x92),
                Color::Rgb(0x81, 0xc7, 0x84),
                Color::Rgb(0xb3, 0x9d, 0xdb),
                Color::Rgb(0xff, 0x8a, 0x65),
            ],
            dim: vec![
                Color::Rgb(0x2b, 0x6e, 0x8c),
                Color::Rgb(0x8f, 0x6d, 0x06),
                Color::Rgb(0x86, 0x37, 0x52),
                Color::Rgb(0x48, 0x70, 0x4a),
                Color::Rgb(0x65, 0x58, 0x7b),
                Color::Rgb(0x8f, 0x4d, 0x39),
            ],
            target: Color::Rgb(0xe5, 0x39, 0x35),
            baseline: Color::Rgb(0x66, 0xbb, 0x6a),
            error: Color::Rgb(0xef, 0x53, 0x50),
            muted: Color::Rgb(0x80, 0x80, 0x80),
            focus: Color::Rgb(0x4f, 0xc3, 0xf7),
        }
    }

    /// The palette the terminal supports: 24-bit when `COLORTERM` says so (or forced by
    /// `JIZHI_TUI_COLORS`), the 16 ANSI colours otherwise.
    pub fn detect() -> Self {
        Self::from_env(|name| std::env::var(name).ok())
    }

    /// [`Palette::detect`] with the environment given as a lookup.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        match var(COLORS_ENV).as_deref() {
            Some("16") => return Self::ansi16(),
            Some("truecolor") | Some("24bit") => return Self::truecolor(),
            _ => {}
        }
        match var("COLORTERM").as_deref() {
            Some("truecolor") | Some("24bit") => Self::truecolor(),
            _ => Self::ansi16(),
        }
    }

    /// The colour of the best trial of the `i`-th batch size.
    pub fn batch(&self, i: usize) -> Color {
        self.bright[i % self.bright.len()]
    }

    /// The colour of the other trials of the `i`-th batch size.
    pub fn batch_dim(&self, i: usize) -> Color {
        self.dim[i % self.dim.len()]
    }

    /// Style of muted text.
    pub fn muted_style(&self) -> Style {
        Style::new().fg(self.muted)
    }

    /// Style of a panel border: highlighted when focused.
    pub fn border(&self, focused: bool) -> Style {
        if focused {
            Style::new().fg(self.focus).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(self.muted)
        }
    }
}

impl Default for Palette {
    fn default() -> Self {
        Self::ansi16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_back_to_sixteen_colours_unless_the_terminal_has_more() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Palette::from_env(env(&[])), Palette::ansi16());
        assert_eq!(
            Palette::from_env(env(&[("TERM", "xterm-256color")])),
            Palette::ansi16()
        );
        assert_eq!(
            Palette::from_env(env(&[("COLORTERM", "truecolor")])),
            Palette::truecolor()
        );
        assert_eq!(
            Palette::from_env(env(&[("COLORTERM", "truecolor"), (COLORS_ENV, "16")])),
            Palette::ansi16()
        );
        // Every ANSI colour is one of the 16 named ones.
        let p = Palette::ansi16();
        for i in 0..6 {
            assert!(!matches!(p.batch(i), Color::Rgb(..) | Color::Indexed(_)));
            assert!(!matches!(
                p.batch_dim(i),
                Color::Rgb(..) | Color::Indexed(_)
            ));
        }
    }
}
