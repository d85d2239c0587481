//! Human output: aligned columns.

use std::io::Write;

/// Writes `rows` under `headers`, each column as wide as its widest cell.
pub(crate) fn write(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut width: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&width).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align() {
        let mut buf = Vec::new();
        super::write(&mut buf, &["A", "LONGER"], &[vec!["xyz".into(), "1".into()], vec!["q".into(), "22".into()]])
            .unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "A    LONGER\nxyz  1\nq    22\n");
    }
}
