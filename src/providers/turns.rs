//! Merging consecutive same-role turns, which both Anthropic and Gemini require to alternate.

use serde_json::{json, Value};

/// Collects `(role, items)` pieces into messages `{"role": …, <key>: [items…]}`, one per run of
/// the same role (`key` is `content` for Anthropic, `parts` for Gemini).
pub(crate) struct Turns {
    key: &'static str,
    done: Vec<Value>,
    role: &'static str,
    items: Vec<Value>,
}

impl Turns {
    pub(crate) fn new(key: &'static str) -> Self {
        Turns {
            key,
            done: Vec::new(),
            role: "",
            items: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, role: &'static str, items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        if self.role != role {
            self.flush();
            self.role = role;
        }
        self.items.extend(items);
    }

    fn flush(&mut self) {
        if !self.items.is_empty() {
            let items = std::mem::take(&mut self.items);
            self.done.push(json!({"role": self.role, self.key: items}));
        }
    }

    pub(crate) fn finish(mut self) -> Vec<Value> {
        self.flush();
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_turns_of_one_role_become_one_message() {
        let mut t = Turns::new("parts");
        t.push("user", vec![json!(1)]);
        t.push("user", vec![json!(2)]);
        t.push("model", vec![]);
        t.push("model", vec![json!(3)]);
        t.push("user", vec![json!(4)]);
        assert_eq!(
            t.finish(),
            vec![
                json!({"role": "user", "parts": [1, 2]}),
                json!({"role": "model", "parts": [3]}),
                json!({"role": "user", "parts": [4]}),
            ]
        );
    }
}
