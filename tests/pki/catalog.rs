//! Data-driven: tests/fixtures/pki/<case>/spec.yml → the certificates the catalog plans
//! (expected.yml: id, file stem, CA, subject, SANs, usages). Adding a case adds no code;
//! `EZK_BLESS=1` writes a missing expected.yml for review.

use ezk::pki::PkiSpec;
use ezk::pki::cert_ids::leaves;

#[test]
fn catalog_fixtures() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pki");
    let mut cases = 0;
    for case in std::fs::read_dir(&root).unwrap() {
        let dir = case.unwrap().path();
        let spec: PkiSpec =
            serde_yaml::from_str(&std::fs::read_to_string(dir.join("spec.yml")).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        spec.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let got = serde_yaml::to_string(&leaves(&spec).unwrap()).unwrap();
        let expected_path = dir.join("expected.yml");
        if !expected_path.exists() && std::env::var_os("EZK_BLESS").is_some() {
            std::fs::write(&expected_path, &got).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        assert_eq!(got, expected, "{}", dir.display());
        cases += 1;
    }
    assert!(cases >= 3);
}
