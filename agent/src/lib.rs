//! ferrum agent (see issue: agent and images).
