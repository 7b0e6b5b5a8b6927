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
