//! A small CSV reader with the semantics of Python's `csv.reader` defaults (the official
//! builders' reader): comma separated, `"` quoting with `""` escapes, `\n` or `\r\n` line
//! ends, newlines allowed inside quotes. Kept in-house because it is 60 lines and fuzzed.

/// One record: its 1-based row number (the header is row 1) and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub row: usize,
    pub fields: Vec<String>,
}

/// Parse all records. The only hard error is a quoted field left open at the end of the
/// input (a truncated file); it reports the row where that record started.
pub fn parse(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut field_started = false;
    let mut row = 1;
    let mut record_row = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    row += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if !field_started => {
                in_quotes = true;
                field_started = true;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                field_started = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                if field_started || !fields.is_empty() || !field.is_empty() {
                    fields.push(std::mem::take(&mut field));
                    records.push(Record { row: record_row, fields: std::mem::take(&mut fields) });
                }
                field_started = false;
                row += 1;
                record_row = row;
            }
            _ => {
                field.push(c);
                field_started = true;
            }
        }
    }
    if in_quotes {
        return Err((record_row, "unterminated quoted field at end of file".into()));
    }
    if field_started || !fields.is_empty() || !field.is_empty() {
        fields.push(field);
        records.push(Record { row: record_row, fields });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values are what Python's csv.reader returns for the same text.
    #[test]
    fn python_csv_semantics() {
        let r = parse("a,b\r\n\"x,y\",\"he said \"\"hi\"\"\"\n\n1,\n").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].fields, vec!["a", "b"]);
        assert_eq!(r[1].fields, vec!["x,y", "he said \"hi\""]);
        assert_eq!(r[2].fields, vec!["1", ""]);
        assert_eq!(r[2].row, 4);
        assert_eq!(parse("\"a\nb\",c\nd").unwrap()[1].row, 3);
        assert!(parse("a,\"open").is_err());
    }
}
