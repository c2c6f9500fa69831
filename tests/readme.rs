//! The README's metric table is generated from the registry: this test
//! fails when they differ. `WEIR_BLESS=1 cargo test --test readme` rewrites
//! the table in README.md.

const START: &str = "<!-- metrics table: generated from src/metrics/ by tests/readme.rs -->\n";
const END: &str = "<!-- end of metrics table -->";

#[test]
fn the_readme_lists_every_metric() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find(START)
        .expect("README has the metrics table start marker")
        + START.len();
    let end = start
        + readme[start..]
            .find(END)
            .expect("README has the end marker");
    let table = weir::metrics::Metrics::new().markdown_table();
    if std::env::var_os("WEIR_BLESS").is_some() {
        let updated = format!("{}{table}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(
        readme[start..end],
        table,
        "the README's metric table is stale: run WEIR_BLESS=1 cargo test --test readme"
    );
}
