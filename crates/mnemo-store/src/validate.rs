//! The limits every request is checked against at the edge, before anything
//! changes. Each check names the field and the limit it breaks.

use crate::error::{Result, StoreError};

/// Longest space name or memory id, in bytes (all allowed characters are ASCII).
pub const MAX_NAME_LEN: usize = 128;
/// Largest memory content, in bytes.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
/// Largest embedding dimension.
pub const MAX_DIMENSION: usize = 4096;
/// Largest `k` of a recall or query.
pub const MAX_K: u32 = 1000;
/// `k` when the request leaves it out.
pub const DEFAULT_K: u32 = 10;
/// Most tags on one memory.
pub const MAX_TAGS: usize = 32;
/// Longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 64;
/// Most spaces in one query.
pub const MAX_QUERY_SPACES: usize = 256;
/// Most inputs a consolidated memory records.
pub const MAX_MERGED_FROM: usize = 32;
/// Most bytes of input texts a consolidated memory records.
pub const MAX_PROVENANCE_BYTES: usize = 1024 * 1024;

fn check_name(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(StoreError::invalid(
            field,
            format!("is {} bytes; the limit is {MAX_NAME_LEN}", value.len()),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(StoreError::invalid(
            field,
            format!("contains {c:?}; allowed are A-Z a-z 0-9 . _ -"),
        ));
    }
    Ok(())
}

/// A space name: 1–128 characters of `[A-Za-z0-9._-]`.
pub fn space(name: &str) -> Result<()> {
    check_name("space", name)
}

/// A memory id: same rule as a space name.
pub fn id(id: &str) -> Result<()> {
    check_name("id", id)
}

/// Memory content: non-empty, at most 64 KiB.
pub fn content(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(StoreError::invalid("content", "must not be empty"));
    }
    if text.len() > MAX_CONTENT_BYTES {
        return Err(StoreError::invalid(
            "content",
            format!("is {} bytes; the limit is {MAX_CONTENT_BYTES}", text.len()),
        ));
    }
    Ok(())
}

/// A confidence-like value: finite, within [0, 1].
pub fn unit_interval(field: &'static str, value: f32) -> Result<()> {
    if !value.is_finite() || !(0.0..=1.0).contains(&value) {
        return Err(StoreError::invalid(
            field,
            format!("is {value}; it must be a number in [0, 1]"),
        ));
    }
    Ok(())
}

/// An embedding: at most 4096 finite values, not all zero. Empty is allowed
/// (the store computes one from text).
pub fn embedding(field: &'static str, values: &[f32]) -> Result<()> {
    if values.len() > MAX_DIMENSION {
        return Err(StoreError::invalid(
            field,
            format!(
                "has {} dimensions; the limit is {MAX_DIMENSION}",
                values.len()
            ),
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(StoreError::invalid(
            field,
            format!("value {i} is {}; every value must be finite", values[i]),
        ));
    }
    if !values.is_empty() && values.iter().all(|v| *v == 0.0) {
        return Err(StoreError::invalid(field, "must not be all zeros"));
    }
    Ok(())
}

/// `k` of a recall or query; `None` means [`DEFAULT_K`].
pub fn k(k: Option<u32>) -> Result<usize> {
    match k.unwrap_or(DEFAULT_K) {
        0 => Err(StoreError::invalid(
            "k",
            format!("is 0; it must be 1..={MAX_K}"),
        )),
        k if k > MAX_K => Err(StoreError::invalid(
            "k",
            format!("is {k}; it must be 1..={MAX_K}"),
        )),
        k => Ok(k as usize),
    }
}

/// Tags: at most 32, each 1–64 bytes.
pub fn tags(tags: &[String]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(StoreError::invalid(
            "tags",
            format!("has {} tags; the limit is {MAX_TAGS}", tags.len()),
        ));
    }
    if let Some(t) = tags.iter().find(|t| t.is_empty() || t.len() > MAX_TAG_LEN) {
        return Err(StoreError::invalid(
            "tags",
            format!(
                "tag of {} bytes; each tag must be 1..={MAX_TAG_LEN} bytes",
                t.len()
            ),
        ));
    }
    Ok(())
}

/// A memory as a client sends it to be remembered.
pub fn memory(space_name: &str, m: &crate::Memory) -> Result<()> {
    memory_fields(
        space_name,
        &m.id,
        &m.content,
        &m.embedding,
        m.confidence,
        &m.tags,
    )?;
    if m.merged_from.len() > MAX_MERGED_FROM {
        return Err(StoreError::invalid(
            "merged_from",
            format!(
                "has {} inputs; the limit is {MAX_MERGED_FROM}",
                m.merged_from.len()
            ),
        ));
    }
    let bytes: usize = m.merged_from.iter().map(|i| i.content.len()).sum();
    if bytes > MAX_PROVENANCE_BYTES {
        return Err(StoreError::invalid(
            "merged_from",
            format!("holds {bytes} bytes of text; the limit is {MAX_PROVENANCE_BYTES}"),
        ));
    }
    for input in &m.merged_from {
        id(&input.id)?;
        if input.tags.len() > MAX_TAGS {
            return Err(StoreError::invalid(
                "merged_from",
                format!("input {:?} has more than {MAX_TAGS} tags", input.id),
            ));
        }
    }
    usage(m)
}

/// A memory as a holder stores it: a client's checks, plus the fields the
/// node that took the write fills in (id, embedding), in the space's
/// dimension `dim` (0: not fixed yet).
pub fn stored_memory(space_name: &str, m: &crate::Memory, dim: usize) -> Result<()> {
    memory(space_name, m)?;
    if m.id.is_empty() {
        return Err(StoreError::invalid(
            "id",
            "must not be empty in a stored memory",
        ));
    }
    if m.embedding.is_empty() {
        return Err(StoreError::invalid(
            "embedding",
            "must not be empty in a stored memory",
        ));
    }
    if dim != 0 && m.embedding.len() != dim {
        return Err(StoreError::invalid(
            "embedding",
            format!(
                "has {} dimensions but space {space_name:?} uses {dim}",
                m.embedding.len()
            ),
        ));
    }
    Ok(())
}

/// How far ahead of this node's clock a time another node recorded may be
/// (clocks disagree a little): use is joined by its maximum, so one time
/// far in the future would hold every holder's copy for good.
pub const MAX_CLOCK_AHEAD_MS: i64 = 60 * 60 * 1000;

/// A time recorded on a memory's use: not negative, not more than
/// [`MAX_CLOCK_AHEAD_MS`] ahead of this node's clock.
pub fn use_time(field: &'static str, ms: i64) -> Result<()> {
    let latest = crate::time::now_ms().saturating_add(MAX_CLOCK_AHEAD_MS);
    if !(0..=latest).contains(&ms) {
        return Err(StoreError::invalid(
            field,
            format!(
                "is {ms}; it must be a time in milliseconds since 1970, at most \
                 {MAX_CLOCK_AHEAD_MS} ms ahead of this node's clock"
            ),
        ));
    }
    Ok(())
}

/// A memory's use (see [`crate::decay`]): its times, and its decay's policy.
fn usage(m: &crate::Memory) -> Result<()> {
    if m.recalled_at_ms != 0 {
        use_time("recalled_at_ms", m.recalled_at_ms)?;
    }
    if let Some(d) = &m.decay {
        use_time("decay.as_of_ms", d.as_of_ms)?;
        decay_policy(crate::decay::Policy {
            half_life_ms: d.half_life_ms,
            floor: d.floor,
        })?;
    }
    Ok(())
}

/// How consolidation decays idle memories: a positive half-life, a floor
/// in [0, 1].
pub fn decay_policy(p: crate::decay::Policy) -> Result<()> {
    if p.half_life_ms <= 0 {
        return Err(StoreError::invalid(
            "decay.half_life_ms",
            format!("is {}; it must be positive", p.half_life_ms),
        ));
    }
    unit_interval("decay.floor", p.floor)
}

/// The same checks as [`memory`], on fields not yet made into a `Memory`
/// (an empty `id` means "generate one").
pub fn memory_fields(
    space_name: &str,
    memory_id: &str,
    text: &str,
    values: &[f32],
    confidence: f32,
    labels: &[String],
) -> Result<()> {
    space(space_name)?;
    if !memory_id.is_empty() {
        id(memory_id)?;
    }
    content(text)?;
    embedding("embedding", values)?;
    unit_interval("confidence", confidence)?;
    tags(labels)
}

/// The cue of a recall or query: text, an embedding, or both.
pub fn cue(text: &str, embedding_values: &[f32]) -> Result<()> {
    if text.trim().is_empty() && embedding_values.is_empty() {
        return Err(StoreError::invalid(
            "cue",
            "give text or an embedding (both are empty)",
        ));
    }
    if text.len() > MAX_CONTENT_BYTES {
        return Err(StoreError::invalid(
            "cue",
            format!("is {} bytes; the limit is {MAX_CONTENT_BYTES}", text.len()),
        ));
    }
    embedding("cue_embedding", embedding_values)
}

/// The spaces of a query: 1–256 valid names, no duplicates.
pub fn query_spaces(spaces: &[String]) -> Result<()> {
    if spaces.is_empty() {
        return Err(StoreError::invalid(
            "spaces",
            "must name at least one space",
        ));
    }
    if spaces.len() > MAX_QUERY_SPACES {
        return Err(StoreError::invalid(
            "spaces",
            format!(
                "names {} spaces; the limit is {MAX_QUERY_SPACES}",
                spaces.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(spaces.len());
    for s in spaces {
        space(s)?;
        if !seen.insert(s.as_str()) {
            return Err(StoreError::invalid("spaces", format!("names {s:?} twice")));
        }
    }
    Ok(())
}

/// A consolidation threshold: a similarity in (0, 1].
pub fn threshold(value: f32) -> Result<()> {
    if !value.is_finite() || value <= 0.0 || value > 1.0 {
        return Err(StoreError::invalid(
            "threshold",
            format!("is {value}; it must be in (0, 1]"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: Result<impl std::fmt::Debug>) -> &'static str {
        match r {
            Err(StoreError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn names() {
        assert!(space("agent-7.notes_v2").is_ok());
        assert_eq!(field_of(space("")), "space");
        assert_eq!(field_of(space(&"a".repeat(129))), "space");
        assert!(space(&"a".repeat(128)).is_ok());
        assert_eq!(field_of(space("has space")), "space");
        assert_eq!(field_of(space("slash/")), "space");
        assert_eq!(field_of(space("é")), "space");
        assert_eq!(field_of(id("")), "id");
        assert_eq!(field_of(id("x\0")), "id");
    }

    #[test]
    fn content_limits() {
        assert_eq!(field_of(content("")), "content");
        assert_eq!(field_of(content("   ")), "content");
        assert!(content(&"x".repeat(MAX_CONTENT_BYTES)).is_ok());
        assert_eq!(
            field_of(content(&"x".repeat(MAX_CONTENT_BYTES + 1))),
            "content"
        );
    }

    #[test]
    fn numbers() {
        assert!(unit_interval("confidence", 0.0).is_ok());
        assert!(unit_interval("confidence", 1.0).is_ok());
        for bad in [f32::NAN, -0.1, 1.01, f32::INFINITY] {
            assert_eq!(field_of(unit_interval("confidence", bad)), "confidence");
        }
        assert_eq!(field_of(k(Some(0))), "k");
        assert_eq!(field_of(k(Some(1001))), "k");
        assert_eq!(k(None).unwrap(), 10);
        assert_eq!(k(Some(1000)).unwrap(), 1000);
        assert_eq!(field_of(threshold(0.0)), "threshold");
        assert_eq!(field_of(threshold(f32::NAN)), "threshold");
    }

    #[test]
    fn embeddings() {
        assert!(embedding("embedding", &[]).is_ok());
        assert!(embedding("embedding", &[0.1, 0.2]).is_ok());
        assert_eq!(
            field_of(embedding("embedding", &[0.1, f32::NAN])),
            "embedding"
        );
        assert_eq!(field_of(embedding("embedding", &[0.0, 0.0])), "embedding");
        assert_eq!(
            field_of(embedding("embedding", &vec![0.5; MAX_DIMENSION + 1])),
            "embedding"
        );
        assert_eq!(field_of(cue("", &[])), "cue");
        assert_eq!(field_of(cue("x", &[f32::INFINITY])), "cue_embedding");
    }

    #[test]
    fn query_space_lists() {
        assert_eq!(field_of(query_spaces(&[])), "spaces");
        let twice = vec!["a".to_string(), "a".to_string()];
        assert_eq!(field_of(query_spaces(&twice)), "spaces");
        assert_eq!(
            field_of(query_spaces(&["ok".into(), "b d".into()])),
            "space"
        );
    }
}
