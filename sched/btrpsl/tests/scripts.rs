//! btrpsl against the btrpsl project's own scripts (`../shared/data/btrpsl`) and the values its
//! tests expect (ScriptBuilderTest and the constraint builders' tests), and a fuzz test: random
//! token streams and random bytes never panic.

#[path = "../../../tests/common/prerequisite.rs"]
mod prerequisite;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::json;
use vjob_btrpsl::{Context, Errors, Evaluated, Library, Value};

fn data() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/btrpsl");
    if d.is_dir() {
        Some(d)
    } else {
        prerequisite::missing(
            "btrpsl scripts",
            &format!("no btrpsl scripts at {} (the shared reference data)", d.display()),
        );
        None
    }
}

fn eval(text: &str) -> Result<std::rc::Rc<Evaluated>, Errors> {
    Library::new(Vec::new(), Context::default()).load_text("test.btrp", text)
}

fn ok(text: &str) -> std::rc::Rc<Evaluated> {
    eval(text).unwrap_or_else(|e| panic!("{e}"))
}

fn export<'a>(e: &'a Evaluated, name: &str) -> &'a Value {
    &e.exports
        .iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("{name} not exported"))
        .value
}

fn sizes(v: &Value) -> Vec<usize> {
    match v {
        Value::Set(p) => p.iter().map(|x| x.clone().into_set().len()).collect(),
        _ => panic!("not a set: {v}"),
    }
}

#[test]
fn numbers_follow_btrpsl_arithmetic() {
    let e = ok(
        "namespace n;\n$x = -3; $y = 2 * $x ^ 2; $z = (0xff + 5) / 5; $a = 077 % 10;\n\
         $x += 5; $y -= 10; $z /= 0x2; $a *= 0xa; $a %= 7; $b = !$a; $c = !0;\n\
         $f1 = 0.7; $f2 = 9 ^ 0.5; $f3 = 0xff * 3.5; $toto = $a > 7; $titi = $a < 7; $foo = 15 == 0xf;\n\
         $bar = 8 <= $y; $bi = 7 >= $y; $baz = $f1 < 15; $biz = 3 == $f2;\n\
         export $x, $y, $z, $a, $b, $c, $f1, $f2, $f3, $toto, $titi, $foo, $bar, $bi, $baz, $biz to *;",
    );
    let want = [
        ("$x", json!(2)),
        ("$y", json!(8)),
        ("$z", json!(26)),
        ("$a", json!(2)),
        ("$b", json!(0)),
        ("$c", json!(1)),
        ("$f1", json!(0.7)),
        ("$f2", json!(3.0)),
        ("$f3", json!(892.5)),
        ("$toto", json!(0)),
        ("$titi", json!(1)),
        ("$foo", json!(1)),
        ("$bar", json!(1)),
        ("$bi", json!(0)),
        ("$baz", json!(1)),
        ("$biz", json!(1)),
    ];
    for (k, v) in want {
        assert_eq!(export(&e, k).to_json(), v, "{k}");
    }
}

#[test]
fn logic_and_conditions() {
    let e = ok("namespace n;\n$x = 7; $y = 8; $z = 100;\n\
         $o = {0 || 1, 0 || 0}; $n = 0 || 0; $o2 = 1 || 1; $o3 = 1 || 0; $a = 1 && 1; $b = 1 && 0;\n\
         $h1 = ($x > 7) || ($y * 2 == 0x10); $h2 = ($z == 10 ^ 2) && $h1;\n\
         $first = 0; $second = 0; $third = 0;\n\
         if $x == 7 { $first = 1; } else { $first = 2; }\n\
         if $x > 7 { $second = 2; } else if $y == 8 { $second = 1; } else { $second = 3; }\n\
         if $x < 0 { $third = 1; } else if $x > 100 { $third = 2; } else { $tmp = 5; $third = $tmp; }\n\
         export $o, $o2, $o3, $n, $a, $b, $h[1,2], $first, $second, $third to *;");
    assert_eq!(export(&e, "$o").to_json(), json!([1, 0]));
    assert_eq!(
        (export(&e, "$o2").to_json(), export(&e, "$o3").to_json()),
        (json!(1), json!(1))
    );
    assert_eq!(export(&e, "$n").to_json(), json!(0));
    assert_eq!(export(&e, "$a").to_json(), json!(1));
    assert_eq!(export(&e, "$b").to_json(), json!(0));
    assert_eq!(export(&e, "$h1").to_json(), json!(1));
    assert_eq!(export(&e, "$h2").to_json(), json!(1));
    assert_eq!(export(&e, "$first").to_json(), json!(1));
    assert_eq!(export(&e, "$second").to_json(), json!(1));
    assert_eq!(export(&e, "$third").to_json(), json!(5));
    assert!(e.exports.iter().all(|x| x.name != "$tmp"));
    let err = eval("namespace n; if 1 { $t = 1; } $u = $t;").unwrap_err();
    assert!(err.to_string().contains("unknown variable `$t`"), "{err}");
}

#[test]
fn sets_ranges_and_partitions() {
    let e = ok(
        "namespace n;\nVM[1..100] : tiny; @pastel-[1..100,frontend].b217.home : node;\n\
         $S1 = VM[1..100]; {$T1, $T2, $T3} = $S1 / 3;\n\
         $c1 = #@pastel-[1..10,15,frontend].b217.home; $c2 = #{$T1, $T2, $T3};\n\
         $res = VM[1..100] - VM[50..70] + VM[50..60]; $n = #$res;\n\
         $parts = @pastel-[1..100].b217.home % 33; $np = #$parts;\n\
         $eq = VM[1..100] == VM[1..100]; $A = VM[1..100]; $eq2 = $A == VM[1..100];\n\
         $foo = 5; $y = \"zip\"; {VMbaz, VMzip} : tiny; $r = VM[$foo, baz, 7, $y, 15, 12..9];\n\
         $p = {VM1, VM2, VM3} * {VM2, VM3, VM4}; $q = {VM1, VM2} ^ 2;\n\
         $s = \"come \" + \"out \" + 5 + \" \" + VM1;\n\
         export $T[1..3], $c1, $c2, $n, $parts, $np, $eq, $eq2, $r, $p, $q, $s to *;",
    );
    let len = |k: &str| export(&e, k).clone().into_set().len();
    assert_eq!((len("$T1"), len("$T2"), len("$T3")), (34, 34, 32));
    assert_eq!(export(&e, "$c1").to_json(), json!(12));
    assert_eq!(export(&e, "$c2").to_json(), json!(3));
    assert_eq!(export(&e, "$n").to_json(), json!(90));
    assert_eq!(sizes(export(&e, "$parts")), vec![33, 33, 33, 1]);
    assert_eq!(export(&e, "$eq").to_json(), json!(1));
    assert_eq!(export(&e, "$eq2").to_json(), json!(1));
    assert_eq!(
        export(&e, "$r").to_json(),
        json!(["n.VM5", "n.VMbaz", "n.VM7", "n.VMzip", "n.VM15", "n.VM9", "n.VM10", "n.VM11", "n.VM12"])
    );
    // Unordered pairs of distinct elements, each once.
    assert_eq!(export(&e, "$p").clone().into_set().len(), 6);
    assert_eq!(export(&e, "$q").to_json(), json!([["n.VM1", "n.VM2"]]));
    assert_eq!(export(&e, "$s").to_json(), json!("come out 5 n.VM1"));
    for (n, parts) in [(9, 4), (10, 4), (100, 3), (11, 3), (100, 4)] {
        let e = ok(&format!(
            "namespace n; VM[1..{n}] : t; $p = VM[1..{n}] / {parts}; export $p to *;"
        ));
        let got = sizes(export(&e, "$p"));
        let c = (n as usize).div_ceil(parts);
        assert!(
            got.iter().all(|s| *s <= c) && got.iter().sum::<usize>() == n as usize,
            "{n}/{parts}: {got:?}"
        );
    }
}

#[test]
fn hex_ranges_name_nodes_without_prefix_or_padding() {
    let e = ok("namespace datacenter; $servers = @srv-[0x1..0xff, frontend]; $racks = $servers % 50; export $servers, $racks to *;");
    let servers = export(&e, "$servers").to_json();
    assert_eq!(servers.as_array().unwrap().len(), 256);
    assert_eq!(servers[0], json!("@srv-1"));
    assert_eq!(servers[9], json!("@srv-a"));
    assert_eq!(servers[254], json!("@srv-ff"));
    assert_eq!(servers[255], json!("@srv-frontend"));
    assert_eq!(sizes(export(&e, "$racks")), vec![50, 50, 50, 50, 50, 6]);
}

#[test]
fn multiple_assignment_templates_and_me() {
    let d = match data() {
        Some(d) => d,
        None => return,
    };
    let mut lib = Library::new(vec![], Context::default());
    let e = lib.load_file(&d.join("main/examples/multipleAssignment.btrp")).unwrap();
    let names = |k: &str| export(&e, k).to_json();
    let vm = |i: &[u32]| {
        json!(i
            .iter()
            .map(|i| format!("multipleAssignment.VM{i}"))
            .collect::<Vec<_>>())
    };
    assert_eq!(names("$t1"), vm(&[1, 2]));
    assert_eq!(names("$t3"), vm(&[5, 6]));
    assert_eq!(names("$a"), vm(&[4, 5, 6]));
    assert_eq!(names("$b"), vm(&[1, 2, 3]));
    assert_eq!(names("$t"), vm(&[4, 5, 6]));
    let t = ok("namespace test.template; VM[1..5] : tinyVMs<migratable, start=\"7.5\", stop=12>; frontend : mediumVMs; @N[1..12] : defaultNodes; lonely($me);");
    assert_eq!(t.vms.len(), 6);
    assert_eq!(t.vms[5].name, "test.template.frontend");
    assert_eq!(t.vms[5].template.as_deref(), Some("mediumVMs"));
    assert_eq!(t.nodes.len(), 12);
    assert_eq!(
        json!(t.vms[0].options),
        json!({"migratable": true, "start": 7.5, "stop": 12})
    );
    assert_eq!(t.constraints[0].vms().len(), 6);
}

#[test]
fn constraints_come_out_as_btrplace_json() {
    let e = ok("namespace test; VM[1..10] : tiny; @N[1..20] : defaultNode;\n\
         >>among(VM[1..5], @N[1..10] / 2);\n\
         ban({VM1, VM2}, @N[1..10]);\n\
         killed(VM[1..10]);\n\
         >>offline(@N[1..10]);\n\
         overbook(@N[1..4], \"bar\", 7.5);\n\
         preserve(VM[1..4], \"bar\", 7);\n\
         >>resourceCapacity(@N[1..3], \"bar\", 7 - 5 % 2);\n\
         >>split({VM[1..5] - {VM2}, {VM2}});\n\
         splitAmong({VM[1..5], VM[6..10]}, {@N[1..5], @N[6..10], @N[11..20]});\n\
         spread(VM[1..3]);");
    let count = |id: &str| e.constraints.iter().filter(|c| c.id == id).count();
    assert_eq!(
        (
            count("among"),
            count("ban"),
            count("killed"),
            count("offline"),
            count("overbook"),
            count("preserve")
        ),
        (1, 2, 10, 10, 4, 4)
    );
    let j: Vec<serde_json::Value> = e.constraints.iter().map(|c| c.to_json()).collect();
    assert_eq!(j[0]["continuous"], json!(false), ">> is discrete, as in btrpsl");
    assert_eq!(j[0]["parts"].as_array().unwrap().len(), 2);
    assert_eq!(
        j[1],
        json!({"id": "ban", "vm": "test.VM1", "nodes": (1..=10).map(|i| format!("@N{i}")).collect::<Vec<_>>(), "continuous": true})
    );
    let rc = j.iter().find(|c| c["id"] == "resourceCapacity").unwrap();
    assert_eq!(rc["amount"], json!(6));
    let sp = j.last().unwrap();
    assert_eq!(
        sp,
        &json!({"id": "spread", "vms": ["test.VM1", "test.VM2", "test.VM3"], "continuous": true})
    );
}

#[test]
fn errors_name_their_line_and_every_one_is_reported() {
    let err = eval(
        "namespace test.template; VM[1..20] : tinyVMs<migratable,volatile>;\n\
         $a = VM[1..5] + VM6;\n\
         $b = VM[1..5] + @N[1..3];\n\
         $c = VM[1..5] + 7;\n\
         $d = VM[1..5] - {VM[1..3]};\n\
         $e = VM[1..5] / @N1;\n\
         $f = VM[1..5] / {1, 3};\n\
         $g = VM[1..5] * VM[21,22];\n\
         $h = VM[22,23] / 2;\n",
    )
    .unwrap_err();
    let lines: Vec<u32> = err.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9], "{err}");
    for (script, line, what) in [
        ("namespace n;\nVM[1,1] : tiny;", 2, "declared twice"),
        ("namespace n;\n$me = 7;", 2, "cannot be assigned"),
        ("namespace n;\nVM[1..10] : t;\nlonely(N15);", 3, "unknown VM `N15`"),
        ("namespace n;\nVM[1..10] : t;\n$a = VM[1..12];", 3, "unknown VM `VM11`"),
        ("namespace n;\nVM1 : t;\n>>root(VM1);", 3, "only be continuous"),
        ("namespace n;\nVM1 : t;\nfoo(VM1);", 3, "unknown constraint `foo`"),
        ("namespace n;\n$x = 1 / 0;", 2, "by zero"),
        ("namespace n;\n$x = {};", 2, "empty sets"),
        ("VM1 : t;", 1, "starts with `namespace"),
    ] {
        let e = eval(script).unwrap_err();
        assert_eq!(e.0[0].line, line, "{script}: {e}");
        assert!(e.0[0].message.contains(what), "{script}: {e}");
        assert!(e.to_string().starts_with(&format!("test.btrp:{line}:")), "{e}");
    }
}

/// The scripts btrpsl's tests read, in the context its tests give them.
#[test]
fn the_btrpsl_projects_valid_scripts_evaluate() {
    let Some(d) = data() else { return };
    let t = d.join("tests");
    let mut lib = Library::new(vec![t.join("examples")], Context::default());
    let app = lib
        .load_file(&t.join("examples/myApp.btrp"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((app.vms.len(), app.nodes.len(), app.constraints.len()), (24, 0, 5));
    let dc = lib.load_file(&t.join("examples/datacenter.btrp")).unwrap();
    assert_eq!(dc.nodes.len(), 251);
    let r: Vec<usize> = (1..=7)
        .map(|i| export(&dc, &format!("$R{i}")).clone().into_set().len())
        .collect();
    assert_eq!(r, vec![40, 40, 40, 40, 40, 40, 11]);

    let mut lib = Library::new(vec![t.join("deps")], Context::default());
    let a = lib.load_file(&t.join("deps/a.btrp")).unwrap();
    assert_eq!(a.imports, vec!["b", "c"]);
    let b = lib.load_file(&t.join("deps/b.btrp")).unwrap();
    assert_eq!(b.imports, vec!["in.titi", "in.toto"]);

    let ex = d.join("main/examples");
    for (dirs, file, vms, constraints) in [
        (vec![], "helloVWorld.btrp", 4, 2),
        (vec![ex.join("includes")], "vappHA.btrp", 24, 5),
        (vec![ex.join("advanced")], "advanced/clients/app1.btrp", 30, 14),
        (
            vec![ex.join("advanced")],
            "advanced/admin/sysadmin.btrp",
            1,
            3 + 6 + 256 + 30 + 30,
        ),
        (vec![t.join("env")], "../../tests/env/sysadmin.btrp", 0, 30 + 30),
        (vec![t.clone()], "../../tests/testExport.btrp", 0, 0),
        (vec![t.clone()], "../../tests/vapp.btrp", 22, 6 + 3 + 1),
    ] {
        let mut lib = Library::new(dirs, Context::default());
        let e = lib.load_file(&ex.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((e.vms.len(), e.constraints.len()), (vms, constraints), "{file}");
    }
    // env/sysadmin: `$clients` gathers what the scripts under clients/ export as `$me`.
    let mut lib = Library::new(vec![t.join("env")], Context::default());
    let s = lib.load_file(&t.join("env/sysadmin.btrp")).unwrap();
    assert_eq!(export(&s, "$card").to_json(), json!(30));
}

/// The scripts btrpsl's tests must reject fail, each at its line.
#[test]
fn the_btrpsl_projects_invalid_scripts_fail_at_their_lines() {
    let Some(d) = data() else { return };
    let t = d.join("tests");
    for (file, lines) in [
        ("bads/bad.btrp", vec![6, 7]),
        ("bads/ins/b1.btrp", vec![5]),
        ("bads/ins/b2.btrp", vec![7]),
        ("bads/ins/b3.btrp", vec![1]),
        ("badName.btrp", vec![1]),
    ] {
        let mut lib = Library::new(vec![t.join("bads")], Context::default());
        let e = lib.load_file(&t.join(file)).expect_err(file);
        let got: Vec<u32> = e.0.iter().map(|e| e.line).collect();
        assert_eq!(got, lines, "{file}: {e}");
    }
    // A script importing bad ones: one error per failing import.
    let mut lib = Library::new(vec![t.join("bads")], Context::default());
    let e = lib
        .load_text(
            "bar.btrp",
            "namespace bar;\nimport bad;\nimport ins.*;\nVM7 : tiny;\nroot(VM7);",
        )
        .unwrap_err();
    let got: Vec<u32> = e.0.iter().map(|e| e.line).collect();
    assert_eq!(got, vec![2, 3, 3, 3], "{e}");
}

#[test]
fn exports_are_seen_only_where_they_are_sent() {
    let Some(d) = data() else { return };
    let t = d.join("tests");
    let sees = |ns: &str, var: &str| {
        let mut lib = Library::new(vec![t.clone()], Context::default());
        lib.load_text("x.btrp", &format!("namespace {ns};\nimport testExport;\n$x = {var};"))
            .is_ok()
    };
    assert!(sees("zog", "$testExport.racks"));
    assert!(sees("toto", "$testExport.nodes"));
    assert!(sees("testExport.bla", "$testExport.nodes"));
    assert!(sees("sysadmin", "$testExport"));
    assert!(!sees("zog", "$testExport.nodes"));
    assert!(!sees("sysadmin.foo", "$testExport.nodes"));
    assert!(!sees("sysadmin.foo", "$testExport"));
}

#[test]
fn a_context_limits_templates_and_nodes() {
    let ctx = Context {
        templates: Some(vec!["small".into()]),
        nodes: Some(vec!["n1".into(), "n2".into()]),
        ..Context::default()
    };
    let mut lib = Library::new(vec![], ctx);
    let e = lib
        .load_text(
            "app.btrp",
            "namespace app;\nVM1 : small;\nVM2 : huge;\nban(VM1, @n3);\nfence(VM1, @n1);",
        )
        .unwrap_err();
    let msgs: Vec<String> = e.0.iter().map(|e| format!("{}:{}", e.line, e.message)).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs[0].starts_with("3:unknown template `huge`"), "{msgs:?}");
    assert!(msgs[1].starts_with("4:unknown node `@n3`"), "{msgs:?}");
}

/// Random token soup: every input ends in a result, never a panic.
fn soup() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "namespace",
        "import",
        "export",
        "to",
        "for",
        "in",
        "if",
        "else",
        "VM[",
        "@n-[",
        "$T[",
        "]",
        "].x",
        "spread(",
        ">>",
        "(",
        ")",
        "{",
        "}",
        ",",
        ";",
        ":",
        "<",
        ">",
        "=",
        "+=",
        "+",
        "-",
        "*",
        "/",
        "%",
        "^",
        "#",
        "!",
        "&&",
        "||",
        "==",
        "..",
        "1",
        "0x1f",
        "017",
        "2.5",
        "\"s\"",
        "VM1",
        "@n1",
        "$x",
        "$me",
        "_",
        "a.b",
        "a.*",
        "tiny",
        "\n",
        " ",
        "//c\n",
        "/*",
        "*/",
        "0",
        "99999999999999999999",
        "$",
        "@",
        "?",
    ]);
    prop::collection::vec(atoms, 0..60).prop_map(|v| v.concat())
}

/// Cases per fuzz test: 2,000 in the suite; `BTRPSL_FUZZ_CASES` for longer runs by hand.
fn fuzz_cases() -> u32 {
    std::env::var("BTRPSL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), ..ProptestConfig::default() })]
    #[test]
    fn no_token_stream_makes_it_panic(s in soup()) {
        let _ = eval(&s);
        let _ = eval(&format!("namespace f; VM[1..3] : t; @n[1..3] : n; $x = 1; {s}"));
    }

    #[test]
    fn no_bytes_make_it_panic(b in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = eval(&String::from_utf8_lossy(&b));
    }
}
