//! Client-facing wire formats. OpenAI chat is the one the gateway speaks.
pub mod openai;
