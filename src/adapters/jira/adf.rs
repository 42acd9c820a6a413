//! Atlassian Document Format: Jira's REST API v3 takes rich text only as
//! ADF (a plain string is refused). The mapping's description becomes a
//! document whose structure comes from the bridge's own labels; every value
//! from the alert is a text node of its own, so nothing in it is read as
//! structure (ADF is JSON: there is no markup to inject).

use serde_json::{Value, json};

use crate::domain::incident::mapping::LABELS;

fn text(s: &str) -> Option<Value> {
    (!s.is_empty()).then(|| json!({"type": "text", "text": s}))
}

fn strong(s: &str) -> Value {
    json!({"type": "text", "text": s, "marks": [{"type": "strong"}]})
}

fn paragraph(content: Vec<Value>) -> Value {
    json!({"type": "paragraph", "content": content})
}

fn bullets(items: Vec<Vec<Value>>) -> Value {
    let items: Vec<Value> = items
        .into_iter()
        .map(|c| json!({"type": "listItem", "content": [paragraph(c)]}))
        .collect();
    json!({"type": "bulletList", "content": items})
}

/// A link when the whole item is one (no spaces), else plain text.
fn link(s: &str) -> Vec<Value> {
    let is_link = (s.starts_with("https://") || s.starts_with("http://"))
        && !s.chars().any(char::is_whitespace);
    if is_link {
        vec![json!({"type": "text", "text": s, "marks": [{"type": "link", "attrs": {"href": s}}]})]
    } else {
        text(s).into_iter().collect()
    }
}

pub fn document(content: Vec<Value>) -> Value {
    json!({"type": "doc", "version": 1, "content": content})
}

/// Plain lines (notes, comments) as a document: one paragraph a line.
pub fn lines(s: &str) -> Value {
    let content: Vec<Value> = s
        .lines()
        .filter_map(|l| text(l).map(|t| paragraph(vec![t])))
        .collect();
    document(if content.is_empty() {
        vec![paragraph(vec![])]
    } else {
        content
    })
}

/// The mapping's description (labelled lines, continuations indented four
/// spaces, `Custom properties:` items indented two, `Links:` items after
/// `- `) as a document. Text of another shape (a routing template's own)
/// stays in plain paragraphs.
pub fn description(s: &str) -> Value {
    let mut doc = Builder::default();
    for line in s.lines() {
        if let Some(more) = line.strip_prefix(CONTINUED) {
            doc.continue_with(more);
        } else if doc.in_list && line.starts_with("  ") && !line.starts_with("   ") {
            doc.item(text(&line[2..]).into_iter().collect());
        } else if doc.in_list && line.starts_with("- ") {
            doc.item(link(&line[2..]));
        } else if line == "Custom properties:" || line == "Links:" {
            doc.end_list();
            doc.block(vec![strong(line)]);
            doc.in_list = true;
        } else {
            doc.end_list();
            let labelled = LABELS
                .iter()
                .find(|l| line.strip_prefix(*l).is_some_and(|r| r.starts_with(": ")));
            let content = match labelled {
                Some(label) => {
                    let mut p = vec![strong(&format!("{label}:"))];
                    p.extend(text(&line[label.len() + 1..]));
                    p
                }
                None => text(line).into_iter().collect(),
            };
            doc.block(content);
        }
    }
    doc.end_list();
    document(doc.out)
}

/// The continuation indent of `domain::alert::text::continued`.
const CONTINUED: &str = "    ";

#[derive(Default)]
struct Builder {
    out: Vec<Value>,
    /// Items of the list being read, when in one.
    items: Vec<Vec<Value>>,
    in_list: bool,
}

impl Builder {
    fn block(&mut self, content: Vec<Value>) {
        if !content.is_empty() {
            self.out.push(paragraph(content));
        }
    }

    fn item(&mut self, content: Vec<Value>) {
        if !content.is_empty() {
            self.items.push(content);
        }
    }

    /// A continuation line joins the last item or paragraph after a break.
    fn continue_with(&mut self, more: &str) {
        let Some(t) = text(more) else { return };
        let last = if self.in_list {
            self.items.last_mut()
        } else {
            self.out
                .last_mut()
                .and_then(|p| p.get_mut("content"))
                .and_then(Value::as_array_mut)
        };
        match last {
            Some(content) => content.extend([json!({"type": "hardBreak"}), t]),
            None => self.block(vec![t]),
        }
    }

    fn end_list(&mut self) {
        if self.in_list && !self.items.is_empty() {
            let items = std::mem::take(&mut self.items);
            self.out.push(bullets(items));
        }
        self.in_list = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_lists_and_continuations_become_structure() {
        let d = description(
            "Alert rule: cpu high\nDescription: line one\n    line two\nCustom properties:\n  team: ops\n  note: a\n    b\nLinks:\n- https://portal.azure.com/x\n- not a link\nfree text\n",
        );
        assert_eq!(d["type"], "doc");
        assert_eq!(d["version"], 1);
        let c = d["content"].as_array().unwrap();
        assert_eq!(c[0]["content"][0]["text"], "Alert rule:");
        assert_eq!(c[0]["content"][1]["text"], " cpu high");
        assert_eq!(c[1]["content"][2]["type"], "hardBreak");
        assert_eq!(c[1]["content"][3]["text"], "line two");
        assert_eq!(c[2]["content"][0]["text"], "Custom properties:");
        let props = c[3]["content"].as_array().unwrap();
        assert_eq!(props.len(), 2);
        assert_eq!(props[1]["content"][0]["content"][2]["text"], "b");
        let links = c[5]["content"].as_array().unwrap();
        assert_eq!(
            links[0]["content"][0]["content"][0]["marks"][0]["attrs"]["href"],
            "https://portal.azure.com/x"
        );
        assert!(links[1]["content"][0]["content"][0].get("marks").is_none());
        assert_eq!(c[6]["content"][0]["text"], "free text");
        // No empty text node anywhere: Jira refuses them.
        assert!(!d.to_string().contains(r#""text":"""#));
    }

    #[test]
    fn alert_text_that_looks_like_a_label_stays_text() {
        let d = description("Description: x\n    Alert id: forged\n");
        let p = &d["content"][0]["content"];
        assert_eq!(p[3]["text"], "Alert id: forged");
        assert!(p[3].get("marks").is_none());
    }
}
