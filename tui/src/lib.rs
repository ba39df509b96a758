//! Terminal dashboard.
