//! The example configuration shipped for operators is valid and says exactly the defaults.

use std::path::Path;

use rsplb_registrar::config::RegistrarConfig;

#[test]
fn the_example_configuration_is_valid_and_equals_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rsp-registrar.example.toml");
    let config = RegistrarConfig::from_file(&path).expect("the example parses");
    config.validate().expect("the example is valid");
    assert_eq!(config, RegistrarConfig::default());
}

/// `rsp-registrar --help` lists the example configuration: the same keys with the same values.
#[test]
fn the_long_help_lists_the_example_configuration() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rsp-registrar"))
        .arg("--help")
        .output()
        .expect("rsp-registrar runs");
    let help = String::from_utf8(out.stdout).unwrap();
    let listing: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("A configuration file"))
        .skip_while(|l| !l.starts_with("  "))
        .take_while(|l| !l.is_empty())
        .map(str::trim)
        .collect();
    // Everything set in the listing parses to the defaults.
    let listed = RegistrarConfig::from_toml(
        &listing
            .iter()
            .filter(|l| !l.starts_with('#'))
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .expect("the listing parses");
    assert_eq!(listed, RegistrarConfig::default());
    // And it names every key of the example file, set or shown as an example.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rsp-registrar.example.toml");
    let example = std::fs::read_to_string(path).unwrap();
    // Sections and keys, set or commented out (`# key = value`); prose comments are skipped.
    let keys = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.trim())
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .filter_map(|l| {
                let head = l.split(" #").next().unwrap().trim_end();
                if head.starts_with('[') && head.ends_with(']') && !head.contains(' ') {
                    Some(head.to_string())
                } else {
                    let (k, _) = head.split_once(" = ")?;
                    k.chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_')
                        .then(|| k.to_string())
                }
            })
            .collect()
    };
    assert_eq!(keys(&listing.join("\n")), keys(&example));
}
