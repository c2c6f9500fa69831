//! The error every section's `validate()` returns: the key and why; the
//! loader adds the file it came from.

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) key: String,
    pub(crate) message: String,
}

impl Invalid {
    pub(crate) fn new(key: impl Into<String>, message: String) -> Self {
        Self {
            key: key.into(),
            message,
        }
    }
}
