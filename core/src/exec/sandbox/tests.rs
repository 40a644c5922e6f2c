use super::*;

#[test]
fn read_rules_cover_everything_but_the_denied_path_and_its_ancestors() {
    let t = std::env::temp_dir().join(format!("vigil-sbx-unit-{}", std::process::id()));
    let _ = fs::remove_dir_all(&t);
    fs::create_dir_all(t.join("a/deny/inner")).unwrap();
    fs::create_dir_all(t.join("a/keep")).unwrap();
    fs::write(t.join("a/file"), "x").unwrap();
    std::os::unix::fs::symlink(t.join("a/deny/inner"), t.join("a/to_denied")).unwrap();
    std::os::unix::fs::symlink(t.join("a"), t.join("to_ancestor")).unwrap();
    std::os::unix::fs::symlink(t.join("a/keep"), t.join("to_kept")).unwrap();
    // A name that has the denied one as its first bytes is another directory.
    fs::create_dir_all(t.join("a/deny2")).unwrap();
    // A chain of links ending in the denied directory, and a link to nothing.
    std::os::unix::fs::symlink(t.join("a/to_denied"), t.join("to_link_to_denied")).unwrap();
    std::os::unix::fs::symlink(t.join("nothing"), t.join("dangling")).unwrap();
    let t = fs::canonicalize(&t).unwrap();
    let denied = vec![t.join("a/deny")];
    let rules = read_rule_paths(&denied);
    for p in [
        t.join("a/keep"),
        t.join("a/file"),
        t.join("to_kept"),
        t.join("a/deny2"),
    ] {
        assert!(rules.contains(&p), "{p:?} missing from {rules:?}");
    }
    for p in [
        PathBuf::from("/"),
        t.clone(),
        t.join("a"),
        t.join("a/deny"),
        t.join("a/deny/inner"),
        t.join("a/to_denied"),
        t.join("to_ancestor"),
        t.join("to_link_to_denied"),
        t.join("dangling"),
    ] {
        assert!(!rules.contains(&p), "{p:?} must not get a read rule");
    }
    // Every top-level directory off the path is covered whole.
    assert!(rules.contains(&PathBuf::from("/etc")) || !Path::new("/etc").exists());
    fs::remove_dir_all(&t).unwrap();
    assert_eq!(read_rule_paths(&[]), vec![PathBuf::from("/")]);
    assert!(read_rule_paths(&[PathBuf::from("/")]).is_empty());
}

#[test]
fn lexical_absolute_cleans_dots() {
    assert_eq!(
        lexical_absolute(Path::new("/r/s"), Path::new("../t/./u")),
        PathBuf::from("/r/t/u")
    );
    assert_eq!(
        lexical_absolute(Path::new("/r"), Path::new("/../../x")),
        PathBuf::from("/x")
    );
}

#[test]
fn mode_names_round_trip_and_the_floor_raises() {
    for m in [
        SandboxMode::Off,
        SandboxMode::Workspace,
        SandboxMode::Strict,
    ] {
        assert_eq!(SandboxMode::parse(m.as_str()), Some(m));
    }
    assert_eq!(SandboxMode::parse("none"), None);
    let c = SandboxConfig {
        floor: Some(SandboxMode::Workspace),
        ..SandboxConfig::default()
    };
    let off = SandboxRequest {
        mode: Some(SandboxMode::Off),
        ..SandboxRequest::default()
    };
    assert_eq!(
        c.mode_for(Some(&off)),
        (SandboxMode::Workspace, Some(SandboxMode::Off))
    );
    let strict = SandboxRequest {
        mode: Some(SandboxMode::Strict),
        ..SandboxRequest::default()
    };
    assert_eq!(c.mode_for(Some(&strict)), (SandboxMode::Strict, None));
    assert_eq!(
        SandboxConfig::default().mode_for(None),
        (SandboxMode::Off, None)
    );
}

#[test]
fn a_denied_path_beneath_a_writable_one_is_labelled_not_held() {
    let root = std::env::temp_dir().join(format!("vigil-sbx-unit-w-{}", std::process::id()));
    fs::create_dir_all(root.join("data")).unwrap();
    let c = SandboxConfig {
        data_dir: Some(root.join("data")),
        deny_read: Some(Vec::new()),
        force_abi: Some(1),
        ..SandboxConfig::default()
    };
    let req = SandboxRequest {
        mode: Some(SandboxMode::Workspace),
        ..SandboxRequest::default()
    };
    let r = c.resolve(Some(&req), Some(&root)).unwrap();
    fs::remove_dir_all(&root).unwrap();
    let read = r
        .enforcement()
        .into_iter()
        .find(|e| e.limit == "sandbox.read")
        .unwrap();
    if kernel_abi() >= 1 {
        assert!(!read.held, "{read:?}");
        assert!(read
            .not_held_reason
            .unwrap()
            .contains("beneath a writable path"));
    }
}
