//! Shared by the integration tests.

use std::path::Path;

/// Creates a data key in `dir` and returns the `[journal]` section of a
/// config that journals into `dir/journal`.
pub fn journal_section(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join("data.key");
    if !key.exists() {
        cardswitch::journal::generate_data_key(&key).unwrap();
    }
    format!(
        "[journal]\ndir = \"{}\"\ndata_key_file = \"{}\"\nsaf_retry_min_ms = 50\nsaf_retry_max_ms = 500\n",
        dir.join("journal").display(),
        key.display()
    )
}
