//! `scripts/apt-mirror.sh`: the Debian archive a node's own APT uses, which the roots made with debootstrap (`scripts/trixie.sh`) come from.

use std::path::Path;
use std::process::Command;

/// Runs the script on an APT directory holding `files` (name, content): its stdout, or
/// its stderr when it fails.
fn mirror(files: &[(&str, &str)]) -> Result<String, String> {
    let apt = tempfile::tempdir().unwrap();
    std::fs::create_dir(apt.path().join("sources.list.d")).unwrap();
    for (name, content) in files {
        std::fs::write(apt.path().join(name), content).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/apt-mirror.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("APT_DIR", apt.path())
        .output()
        .expect("bash");
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

#[test]
fn a_deb822_source_gives_its_archive_past_security_and_disabled_stanzas() {
    let sources = "\
Types: deb
URIs: http://mirror.hospital.local/debian-security
Suites: bookworm-security
Components: main

# The node's own mirror, turned off for now.
Types: deb
URIs: http://old-mirror.hospital.local/debian
Suites: bookworm
Enabled: no

Types: deb-src deb
URIs:
 https://mirror.hospital.local/debian/
Suites: bookworm bookworm-updates
Components: main
";
    assert_eq!(
        mirror(&[("sources.list.d/debian.sources", sources)]),
        Ok("https://mirror.hospital.local/debian".to_owned())
    );
}

#[test]
fn a_one_line_source_gives_its_archive_past_comments_options_and_deb_src() {
    let list = "\
# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.hospital.local/debian/ bookworm main
";
    assert_eq!(
        mirror(&[("sources.list", list)]),
        Ok("http://mirror.hospital.local/debian".to_owned())
    );
    // deb822 sources come first, as APT reads them.
    let sources = "Types: deb\nURIs: http://first.example/debian\nSuites: bookworm\n";
    assert_eq!(
        mirror(&[
            ("sources.list", list),
            ("sources.list.d/a.sources", sources)
        ]),
        Ok("http://first.example/debian".to_owned())
    );
}

#[test]
fn without_an_http_archive_it_says_so_and_what_to_set() {
    let list =
        "deb cdrom:[Debian GNU/Linux 12]/ bookworm main\ndeb file:/srv/debian bookworm main\n";
    let err = mirror(&[("sources.list", list)]).unwrap_err();
    assert!(
        err.contains("no Debian archive among the deb sources"),
        "{err}"
    );
    assert!(err.contains("set TRIXIE_MIRROR"), "{err}");
    assert!(mirror(&[]).is_err());
}
