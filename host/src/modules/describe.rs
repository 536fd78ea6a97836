//! A plugin's self-description: the `wask.describe` custom section the guest SDK's
//! `wask_guest::main!` writes (TOML with `name`, `summary`, `usage`, `inputs`,
//! `outputs`), read without compiling or running anything.

use serde::Deserialize;

/// The custom section's name (`wask_guest::DESCRIPTION_SECTION`).
pub const SECTION: &str = "wask.describe";

/// What a plugin says of itself.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Description {
    pub name: String,
    pub summary: String,
    #[serde(default)]
    pub usage: String,
    #[serde(default)]
    pub inputs: String,
    #[serde(default)]
    pub outputs: String,
}

/// The description `module` carries, `Ok(None)` if it carries none, or why its bytes
/// or its section cannot be read.
pub fn read(module: &[u8]) -> Result<Option<Description>, String> {
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| format!("not a WebAssembly module: {e}"))?;
        if let wasmparser::Payload::CustomSection(section) = payload
            && section.name() == SECTION
        {
            let text = std::str::from_utf8(section.data())
                .map_err(|_| format!("its `{SECTION}` section is not UTF-8 text"))?;
            return toml::from_str(text).map(Some).map_err(|e| {
                format!(
                    "its `{SECTION}` section is not a description: {}",
                    e.message()
                )
            });
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module holding only a custom section `name` with `data`.
    fn with_section(name: &str, data: &[u8]) -> Vec<u8> {
        let mut body = vec![name.len() as u8];
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(data);
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.push(0);
        module.push(body.len() as u8);
        module.extend(body);
        module
    }

    #[test]
    fn a_section_is_read_and_its_absence_is_none() {
        let text = b"name = \"x\"\nsummary = \"does x\"\nusage = \"args = []\"\n";
        let d = read(&with_section(SECTION, text)).unwrap().unwrap();
        assert_eq!((d.name.as_str(), d.summary.as_str()), ("x", "does x"));
        assert_eq!(read(&with_section("other", b"")).unwrap(), None);
        assert!(read(&with_section(SECTION, b"name = 1")).is_err());
        assert!(read(b"not wasm").is_err());
    }
}
