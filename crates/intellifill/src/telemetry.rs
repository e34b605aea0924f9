//! Logging: JSON lines (production) or human-readable text (dev), filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Install the subscriber once per process (later calls are ignored, so tests may call it freely).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// `LOG_FORMAT=json|pretty`, else the given default.
pub(crate) fn format_from_env(default: LogFormat) -> LogFormat {
    match std::env::var("LOG_FORMAT").ok().as_deref() {
        Some("json") => LogFormat::Json,
        Some("pretty") | Some("text") => LogFormat::Pretty,
        _ => default,
    }
}
