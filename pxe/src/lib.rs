//! ferrum boot network services (see issue: boot network).
