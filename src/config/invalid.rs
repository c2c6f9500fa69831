//! The error every section's `validate()` returns: the key and why; the
//! loader adds the file it came from.

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: String) -> Self {
        Self {
            key: key.into(),
            message,
        }
    }
}
