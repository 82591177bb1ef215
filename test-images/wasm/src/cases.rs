//! A classifier's case as features: raw floats, a PGM image's pixels, or numbers as text (shared by `classify` and the `http-classify` service).

/// The features of a case's `bytes`: little-endian `f32`s when `raw_f32`, else a P2 or
/// P5 PGM image's pixels, else comma- or space-separated numbers.
pub fn features(bytes: &[u8], raw_f32: bool) -> Result<Vec<f32>, String> {
    if raw_f32 {
        if bytes.len() % 4 != 0 {
            return Err(format!("{} bytes are not whole f32s", bytes.len()));
        }
        return Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect());
    }
    if bytes.starts_with(b"P5") || bytes.starts_with(b"P2") {
        return pgm(bytes);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_owned())?;
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<f32>()
                .map_err(|_| format!("{s:?} is not a number"))
        })
        .collect()
}

/// A P2 (text) or P5 (binary, 8-bit) PGM image's pixels, row by row.
fn pgm(bytes: &[u8]) -> Result<Vec<f32>, String> {
    let binary = bytes.starts_with(b"P5");
    // The header: magic, width, height, maxval, separated by whitespace and comments.
    let mut fields = Vec::new();
    let mut at = 2;
    while fields.len() < 3 {
        while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b'#') {
            if bytes[at] == b'#' {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
            }
            at += 1;
        }
        let start = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        let field = std::str::from_utf8(&bytes[start..at]).unwrap_or("");
        fields.push(
            field
                .parse::<usize>()
                .map_err(|_| "bad PGM header".to_owned())?,
        );
    }
    let (width, height, maxval) = (fields[0], fields[1], fields[2]);
    if maxval == 0 || maxval > 255 {
        return Err(format!("PGM maxval {maxval} is not 1..255"));
    }
    let pixels: Vec<f32> = if binary {
        bytes
            .get(at + 1..)
            .unwrap_or(&[])
            .iter()
            .map(|&b| b as f32)
            .collect()
    } else {
        std::str::from_utf8(&bytes[at..])
            .map_err(|_| "bad PGM data".to_owned())?
            .split_whitespace()
            .map(|s| s.parse::<f32>().map_err(|_| format!("bad pixel {s:?}")))
            .collect::<Result<_, _>>()?
    };
    if pixels.len() != width * height {
        return Err(format!(
            "PGM has {} pixels, {width}x{height} expected",
            pixels.len()
        ));
    }
    Ok(pixels)
}
