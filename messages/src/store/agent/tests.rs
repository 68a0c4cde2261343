//! Unit tests of the checks the agent writes make before any call.

use super::*;

#[test]
fn volume_lists_are_checked_before_any_call() {
    assert!(check_volumes(&[]).is_err());
    assert!(
        check_volumes(&["a".into(), "a".into()])
            .unwrap_err()
            .to_string()
            .contains("named twice")
    );
    let many: Vec<String> = (0..99).map(|i| format!("v{i}")).collect();
    assert!(
        check_volumes(&many)
            .unwrap_err()
            .to_string()
            .contains("at most 98")
    );
    assert!(check_volumes(&many[..98]).is_ok());
    assert!(check_volumes(&["Bad#name".into()]).is_err());
}
