//! The crate's one error type. Every variant has a stable `code()` that the JS API exposes as
//! `error.code`, so applications can branch on it without parsing messages.

/// Everything that can go wrong in webgpu-llm.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model file is malformed: truncated, inconsistent, or hostile.
    #[error("bad model file: {0}")]
    BadModel(String),
    /// The file is well formed but uses something this runtime does not implement
    /// (an architecture, a tensor type, a tokenizer kind).
    #[error("unsupported model: {0}")]
    UnsupportedModel(String),
    /// The prompt (plus what must be generated) does not fit the context window.
    #[error("the prompt needs {needed} tokens but the context holds {capacity}")]
    ContextOverflow { needed: usize, capacity: usize },
    /// A caller passed a value outside its domain (a sampling knob, a token id, a message role).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No usable GPU adapter.
    #[error("no usable WebGPU adapter: {0}")]
    NoWebGpu(String),
    /// The device or the host ran out of memory, or a buffer exceeds the device's limits.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// The GPU device was lost; the engine must be reloaded.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// Generation was stopped by the caller.
    #[error("aborted")]
    Aborted,
    /// Reading a file failed (native only).
    #[error("i/o error: {0}")]
    Io(String),
}

impl Error {
    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadModel(_) => "bad_model",
            Error::UnsupportedModel(_) => "unsupported_model",
            Error::ContextOverflow { .. } => "context_overflow",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::NoWebGpu(_) => "no_webgpu",
            Error::OutOfMemory(_) => "out_of_memory",
            Error::DeviceLost(_) => "device_lost",
            Error::Aborted => "aborted",
            Error::Io(_) => "io",
        }
    }

    /// The message without the kind's prefix (to quote inside another message).
    pub fn detail(&self) -> String {
        match self {
            Error::BadModel(m)
            | Error::UnsupportedModel(m)
            | Error::InvalidArgument(m)
            | Error::NoWebGpu(m)
            | Error::OutOfMemory(m)
            | Error::DeviceLost(m)
            | Error::Io(m) => m.clone(),
            other => other.to_string(),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
