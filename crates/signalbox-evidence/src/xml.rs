//! A guarded pull reader over quick-xml for the XML formats (JUnit, Cobertura).
//!
//! Why not a tree: a 64 MiB file of `<a/>` would become millions of nodes. Parsers pull events
//! and keep only counters, so memory stays proportional to nesting depth and to the facts kept.
//!
//! Guards, beyond quick-xml's well-formedness checks (matching end tags, attribute syntax,
//! duplicate attributes):
//! - a document type declaration is refused, so no entity can be declared, expanded ("billion
//!   laughs") or fetched (external entities); only the five predefined entities and character
//!   references are understood (XML 1.0 §4.6);
//! - nesting deeper than [`MAX_DEPTH`] elements is refused;
//! - exactly one root element, no text outside it, no element left open at the end.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::{line_column, EvidenceKind, ParseError};

/// The deepest element nesting accepted. JUnit and Cobertura need at most 8 levels.
pub const MAX_DEPTH: usize = 64;

/// One start tag with its attributes unescaped. An empty element (`<a/>`) is reported as a
/// start followed by an end.
#[derive(Debug)]
pub(crate) struct Tag {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    /// Byte offset of the `<`, for error locations.
    pub offset: usize,
}

impl Tag {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

#[derive(Debug)]
pub(crate) enum XmlEvent<'a> {
    Start(Tag),
    End,
    Text(Cow<'a, str>),
}

pub(crate) struct XmlReader<'a> {
    kind: EvidenceKind,
    text: &'a str,
    reader: Reader<&'a [u8]>,
    depth: usize,
    root_seen: bool,
    /// Set after an empty element's start was returned: its end comes next.
    pending_end: bool,
}

impl<'a> XmlReader<'a> {
    pub fn new(kind: EvidenceKind, text: &'a str) -> Self {
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.trim_text(false);
        XmlReader { kind, text, reader, depth: 0, root_seen: false, pending_end: false }
    }

    /// Current nesting depth: 1 inside the root element.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// An error located at a byte offset of the input.
    pub fn error_at(&self, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError::new(self.kind, line_column(self.text, offset), message)
    }

    fn position(&self) -> usize {
        usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX)
    }

    /// The next event, or `None` at the end of a complete document.
    pub fn next_event(&mut self) -> Result<Option<XmlEvent<'a>>, ParseError> {
        if self.pending_end {
            self.pending_end = false;
            self.depth = self.depth.saturating_sub(1);
            return Ok(Some(XmlEvent::End));
        }
        loop {
            let start = self.position();
            let event = match self.reader.read_event() {
                Ok(event) => event,
                Err(error) => {
                    let at = usize::try_from(self.reader.error_position()).unwrap_or(start);
                    return Err(self.error_at(at, format!("not well-formed XML: {error}")));
                }
            };
            match event {
                Event::Start(tag) => return self.start(tag, start, false).map(Some),
                Event::Empty(tag) => return self.start(tag, start, true).map(Some),
                Event::End(_) => {
                    // quick-xml has already checked that the name matches the open element.
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(Some(XmlEvent::End));
                }
                Event::Text(text) => {
                    let value =
                        text.unescape().map_err(|error| self.error_at(start, format!("bad character or entity reference: {error}")))?;
                    if self.depth == 0 {
                        if value.trim().is_empty() {
                            continue;
                        }
                        return Err(self.error_at(start, "text outside the root element: the file must hold one XML element"));
                    }
                    return Ok(Some(XmlEvent::Text(value)));
                }
                Event::CData(data) => {
                    if self.depth == 0 {
                        return Err(self.error_at(start, "CDATA outside the root element"));
                    }
                    let value = std::str::from_utf8(data.into_inner().as_ref())
                        .map(str::to_string)
                        .map_err(|_| self.error_at(start, "CDATA is not UTF-8"))?;
                    return Ok(Some(XmlEvent::Text(Cow::Owned(value))));
                }
                Event::DocType(_) => {
                    return Err(self.error_at(
                        start,
                        "document type declarations (<!DOCTYPE …>) are not accepted because they can declare entities; remove it",
                    ));
                }
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => continue,
                Event::Eof => {
                    if self.depth > 0 {
                        return Err(
                            self.error_at(self.text.len(), "the file ends inside an element: it is truncated or an end tag is missing")
                        );
                    }
                    if !self.root_seen {
                        return Err(self.error_at(self.text.len(), "the file holds no XML element"));
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn start(&mut self, tag: BytesStart<'_>, offset: usize, empty: bool) -> Result<XmlEvent<'a>, ParseError> {
        if self.depth == 0 {
            if self.root_seen {
                return Err(self.error_at(offset, "a second root element: the file must hold exactly one XML element"));
            }
            self.root_seen = true;
        }
        if self.depth >= MAX_DEPTH {
            return Err(self.error_at(offset, format!("elements are nested more than {MAX_DEPTH} deep")));
        }
        let name = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
        let mut attributes = Vec::new();
        for attribute in tag.attributes() {
            let attribute = attribute.map_err(|error| self.error_at(offset, format!("bad attribute in <{name}>: {error}")))?;
            let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
            let value = attribute
                .unescape_value()
                .map_err(|error| self.error_at(offset, format!("bad value of attribute {key} in <{name}>: {error}")))?
                .into_owned();
            attributes.push((key, value));
        }
        self.depth += 1;
        self.pending_end = empty;
        Ok(XmlEvent::Start(Tag { name, attributes, offset }))
    }

    /// Skips the rest of the element whose start was just returned (its children and end).
    pub fn skip_element(&mut self) -> Result<(), ParseError> {
        let target = self.depth.saturating_sub(1);
        while self.depth > target {
            if self.next_event()?.is_none() {
                break;
            }
        }
        Ok(())
    }
}

/// Parses an optional numeric attribute, refusing text that is not a number.
pub(crate) fn number_attr<T: std::str::FromStr>(
    reader: &XmlReader<'_>,
    tag: &Tag,
    name: &str,
    what: &str,
) -> Result<Option<T>, ParseError> {
    match tag.attr(name) {
        None => Ok(None),
        Some(raw) => raw
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| reader.error_at(tag.offset, format!("attribute {name}=\"{raw}\" of <{}> must be {what}", tag.name))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(text: &str) -> Result<usize, ParseError> {
        let mut reader = XmlReader::new(EvidenceKind::Junit, text);
        let mut events = 0;
        while reader.next_event()?.is_some() {
            events += 1;
        }
        Ok(events)
    }

    #[test]
    fn well_formed_documents_stream_starts_texts_and_ends() {
        assert_eq!(drain("<?xml version=\"1.0\"?>\n<a x=\"1\"><b/>t&amp;<![CDATA[<c>]]></a>\n"), Ok(6));
    }

    #[test]
    fn entity_declarations_are_refused_where_they_start() {
        let laughs = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n <!ENTITY lol2 \"&lol;&lol;&lol;\">\n]>\n<lolz>&lol2;</lolz>";
        let error = drain(laughs).unwrap_err();
        assert_eq!(error.location, "line 2, column 1");
        assert!(error.message.contains("DOCTYPE"), "{}", error.message);
        let external = "<!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><foo>&xxe;</foo>";
        assert!(drain(external).unwrap_err().message.contains("DOCTYPE"));
    }

    #[test]
    fn undeclared_entities_are_refused() {
        let error = drain("<a>\n  &xxe;</a>").unwrap_err();
        assert!(error.message.contains("entity"), "{}", error.message);
        assert!(error.location.starts_with("line 1") || error.location.starts_with("line 2"), "{}", error.location);
    }

    #[test]
    fn nesting_is_limited() {
        let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(drain(&ok).is_ok());
        let deep = format!("{}{}", "<a>".repeat(MAX_DEPTH + 1), "</a>".repeat(MAX_DEPTH + 1));
        let error = drain(&deep).unwrap_err();
        assert_eq!(error.location, format!("line 1, column {}", MAX_DEPTH * 3 + 1));
        // A deep attack that never closes stops at the limit too, without reading to the end.
        let attack = "<a>".repeat(1_000_000);
        assert!(drain(&attack).unwrap_err().message.contains("nested"));
    }

    #[test]
    fn structural_errors_name_their_line() {
        assert_eq!(drain("<a>\n<b></c></a>").unwrap_err().location.split(',').next(), Some("line 2"));
        assert!(drain("<a><b></b>").unwrap_err().message.contains("ends inside"));
        assert!(drain("<a/><b/>").unwrap_err().message.contains("second root"));
        assert!(drain("hello <a/>").unwrap_err().message.contains("outside"));
        assert!(drain("  \n").unwrap_err().message.contains("no XML element"));
        assert!(drain("<a x=\"1\" x=\"2\"/>").is_err());
    }
}
