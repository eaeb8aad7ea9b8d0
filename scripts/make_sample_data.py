"""Write the project's own sample dataset to data/processed/{train,val,test}.jsonl and lock it.

Every pair below was written for this project (none is taken from NL2Bash). Each answer is one
Bash command that parses with `bash -n`, has no ShellCheck finding at warning level or above,
and is not dangerous by cli_tuner.risk; tests/test_sample_data.py holds the files to that.

    python scripts/make_sample_data.py --force     # rewrite the splits and manifest.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli_tuner import atomic, data  # noqa: E402
from cli_tuner.normalize import normalize_command, normalize_prompt  # noqa: E402

SEED = 20240611
SHARES = {"test": 0.1, "val": 0.1}  # the rest is train

PAIRS: list[tuple[str, str]] = [
    # --- files and folders
    ("List all files in the current directory, including hidden ones, in long format.", "ls -la"),
    ("Show the files in the current folder sorted by modification time, newest first.", "ls -lt"),
    ("List the files here sorted by size, largest first, with human-readable sizes.", "ls -lhS"),
    ("Show only the subdirectories of the current folder, not their contents.", "find . -mindepth 1 -maxdepth 1 -type d"),
    ("How many regular files are directly in this directory?", "find . -maxdepth 1 -type f | wc -l"),
    ("Print the full path of the directory I am in.", "pwd"),
    ("Show the directory tree of the current folder two levels deep.", "tree -L 2"),
    ("Create the nested directories build/output/logs in one go.", "mkdir -p build/output/logs"),
    ("Create an empty file named notes.txt, or update its timestamp if it exists.", "touch notes.txt"),
    ("Make a backup copy of config.yaml called config.yaml.bak.", "cp config.yaml config.yaml.bak"),
    ("Copy the src directory to backup/src, keeping permissions and timestamps.", "cp -a src backup/src"),
    ("Rename report.txt to report-final.txt.", "mv report.txt report-final.txt"),
    ("Move every .log file in this folder into the logs directory.", "mv -- ./*.log logs/"),
    ("Delete the file old.txt.", "rm old.txt"),
    ("Remove the empty directory tmpdir.", "rmdir tmpdir"),
    ("Create a symbolic link named latest that points to releases/v2.3.", "ln -s releases/v2.3 latest"),
    ("Where does the symlink latest really point to?", "readlink -f latest"),
    ("What kind of file is image.png?", "file image.png"),
    ("Show size, inode and timestamps of data.csv.", "stat data.csv"),
    ("Display the first 20 lines of server.log.", "head -n 20 server.log"),
    ("Show the last 50 lines of app.log.", "tail -n 50 app.log"),
    ("Keep printing new lines of app.log as they are written.", "tail -f app.log"),
    ("Print README.md with line numbers.", "cat -n README.md"),
    ("Open big.txt in a pager so I can scroll through it.", "less big.txt"),
    ("Compare file1.txt and file2.txt line by line.", "diff file1.txt file2.txt"),
    ("Show a unified diff between old.conf and new.conf.", "diff -u old.conf new.conf"),
    ("Given two sorted files a.txt and b.txt, show the lines that are only in a.txt.", "comm -23 a.txt b.txt"),
    ("Count lines, words and bytes in essay.txt.", "wc essay.txt"),
    ("How many lines does data.csv have?", "wc -l data.csv"),
    ("Split huge.csv into files of 1000 lines each, named part_aa, part_ab and so on.", "split -l 1000 huge.csv part_"),
    ("Create a 10 MB file of zeros called test.img.", "dd if=/dev/zero of=test.img bs=1M count=10"),
    ("Show the size of video.mp4 in bytes.", "stat -c %s video.mp4"),
    # --- find
    ("Find every file named config.json below the current directory.", "find . -name config.json"),
    ("Find all Python files in the src directory.", "find src -name '*.py'"),
    ("Find files bigger than 100 MB in my home directory.", "find ~ -type f -size +100M"),
    ("Which files under the current directory were modified in the last 24 hours?", "find . -type f -mtime -1"),
    ("Find empty directories inside the project folder.", "find project -type d -empty"),
    ("Find .tmp files in /tmp that belong to me.", "find /tmp -name '*.tmp' -user \"$USER\""),
    ("Find files with permission 777 in the current tree.", "find . -type f -perm 0777"),
    ("Find broken symbolic links under the current directory.", "find . -xtype l"),
    ("Find .jpg files in ~/Pictures regardless of upper or lower case.", "find ~/Pictures -iname '*.jpg'"),
    ("Count the JavaScript files under src.", "find src -name '*.js' | wc -l"),
    ("List files here that have not been modified for more than 30 days.", "find . -type f -mtime +30"),
    ("Delete all .pyc files under the current directory.", "find . -name '*.pyc' -delete"),
    ("Find node_modules directories under the current folder without looking inside them.", "find . -type d -name node_modules -prune"),
    ("List the 10 largest files under /var/log.", "find /var/log -type f -exec du -h {} + | sort -rh | head -n 10"),
    ("Make every .sh file under the current directory executable.", "find . -name '*.sh' -exec chmod +x {} +"),
    ("Find files whose names contain a space.", "find . -name '* *'"),
    ("List the hidden files at the top level of my home directory.", "find ~ -maxdepth 1 -name '.*' -type f"),
    ("Find files that are newer than reference.txt.", "find . -newer reference.txt"),
    ("Count the lines of every Markdown file below the current directory.", "find . -name '*.md' -exec wc -l {} +"),
    ("Find the executable files in the bin directory.", "find bin -type f -executable"),
    ("Find files between 1 MB and 10 MB in ~/Downloads.", "find ~/Downloads -type f -size +1M -size -10M"),
    ("Print just the names of the .conf files directly in /etc.", "find /etc -maxdepth 1 -name '*.conf' -printf '%f\\n'"),
    ("Compress every .log file under logs with gzip.", "find logs -name '*.log' -exec gzip {} +"),
    ("Find the files owned by www-data under /var/www.", "find /var/www -user www-data"),
    ("Find files larger than 1 GB anywhere, hiding permission errors.", "find / -type f -size +1G 2>/dev/null"),
    ("Find directories named __pycache__ under the current directory.", "find . -type d -name __pycache__"),
    # --- grep
    ("Search app.log for the word error, ignoring case.", "grep -i error app.log"),
    ("Show the lines of app.log that contain ERROR, with their line numbers.", "grep -n ERROR app.log"),
    ("How many requests in access.log got a 404?", "grep -c ' 404 ' access.log"),
    ("Search all Python files below here for 'import requests' and show file and line.", "grep -rn --include='*.py' 'import requests' ."),
    ("Show the lines of config.ini that are not comments starting with #.", "grep -v '^#' config.ini"),
    ("Print each Exception in trace.log with 3 lines of context around it.", "grep -C 3 Exception trace.log"),
    ("Which files in src mention API_KEY?", "grep -rl API_KEY src"),
    ("Show the lines of server.log that contain WARN or ERROR.", "grep -E 'WARN|ERROR' server.log"),
    ("Search main.c for the whole word main.", "grep -w main main.c"),
    ("Pull all email addresses out of contacts.txt.", "grep -Eo '[[:alnum:]._%+-]+@[[:alnum:].-]+\\.[[:alpha:]]{2,}' contacts.txt"),
    ("Extract every IPv4 address from access.log, one per line.", "grep -Eo '([0-9]{1,3}\\.){3}[0-9]{1,3}' access.log"),
    ("Show the line numbers of the empty lines in notes.txt.", "grep -n '^$' notes.txt"),
    ("Which files in the current directory do not contain the word license?", "grep -L license ./*"),
    ("Search the compressed log archive.log.gz for timeout.", "zgrep timeout archive.log.gz"),
    ("Count the non-empty lines of script.sh.", "grep -c . script.sh"),
    ("Print only the version numbers like 1.2.3 that appear in CHANGELOG.md.", "grep -Eo '[0-9]+\\.[0-9]+\\.[0-9]+' CHANGELOG.md"),
    ("Search data.txt for the literal text a.b*c, not as a regular expression.", "grep -F 'a.b*c' data.txt"),
    ("Show only the first line of nginx.conf that mentions listen.", "grep -m 1 listen nginx.conf"),
    ("Search for TODO in all files here except inside .git.", "grep -rn --exclude-dir=.git TODO ."),
    ("Show the lines of users.txt that begin with admin.", "grep '^admin' users.txt"),
    ("List the running processes whose command line contains python.", "pgrep -af python"),
    # --- sed, awk and text tools
    ("Replace every foo with bar in file.txt and print the result.", "sed 's/foo/bar/g' file.txt"),
    ("Change http: to https: everywhere in links.txt, editing in place and keeping a .bak backup.", "sed -i.bak 's/http:/https:/g' links.txt"),
    ("Print input.txt without its blank lines.", "sed '/^$/d' input.txt"),
    ("Print lines 10 to 20 of file.txt.", "sed -n '10,20p' file.txt"),
    ("Strip trailing whitespace from every line of code.py in place.", "sed -i 's/[[:space:]]*$//' code.py"),
    ("Print data.csv without its header line.", "tail -n +2 data.csv"),
    ("Insert the header line id,name at the top of users.csv, in place.", "sed -i '1i id,name' users.csv"),
    ("Print the second column of data.txt.", "awk '{print $2}' data.txt"),
    ("List the user names defined in /etc/passwd.", "cut -d: -f1 /etc/passwd"),
    ("Add up the numbers in the third column of sales.csv.", "awk -F, '{sum += $3} END {print sum}' sales.csv"),
    ("Print the lines of metrics.txt whose second column is greater than 100.", "awk '$2 > 100' metrics.txt"),
    ("Compute the average of the numbers in values.txt, one number per line.", "awk '{s += $1} END {if (NR) print s / NR}' values.txt"),
    ("Print how many tab-separated fields each line of table.tsv has.", "awk -F'\\t' '{print NF}' table.tsv"),
    ("Print the last slash-separated part of each line in paths.txt.", "awk -F/ '{print $NF}' paths.txt"),
    ("Print columns 1 and 3 of data.csv separated by a tab.", "awk -F, -v OFS='\\t' '{print $1, $3}' data.csv"),
    ("Sort names.txt alphabetically.", "sort names.txt"),
    ("Sort the numbers in numbers.txt from largest to smallest.", "sort -nr numbers.txt"),
    ("Sort data.csv numerically by its second column.", "sort -t, -k2,2n data.csv"),
    ("Remove duplicate lines from list.txt but keep the original order.", "awk '!seen[$0]++' list.txt"),
    ("Count how often each line occurs in words.txt, most frequent first.", "sort words.txt | uniq -c | sort -rn"),
    ("Show only the lines that occur more than once in emails.txt.", "sort emails.txt | uniq -d"),
    ("Convert text.txt to upper case.", "tr '[:lower:]' '[:upper:]' < text.txt"),
    ("Remove every digit from input.txt.", "tr -d '0-9' < input.txt"),
    ("Squeeze runs of spaces in report.txt into single spaces.", "tr -s ' ' < report.txt"),
    ("Turn the commas in data.csv into tabs.", "tr ',' '\\t' < data.csv"),
    ("Print only the number of words in essay.txt.", "wc -w < essay.txt"),
    ("Show the 10 most common words in book.txt.", "tr -cs '[:alpha:]' '\\n' < book.txt | tr '[:upper:]' '[:lower:]' | sort | uniq -c | sort -rn | head -n 10"),
    ("Print log.txt with its lines in reverse order.", "tac log.txt"),
    ("Reverse the characters of each line in letters.txt.", "rev letters.txt"),
    ("Number the non-empty lines of poem.txt.", "nl poem.txt"),
    ("Put the lines of a.txt and b.txt side by side, separated by a tab.", "paste a.txt b.txt"),
    ("Join all lines of ids.txt into one comma-separated line.", "paste -sd, ids.txt"),
    ("Wrap long.txt at 80 characters without breaking words.", "fold -s -w 80 long.txt"),
    ("Show data.csv as an aligned table.", "column -s, -t data.csv"),
    ("Convert the Windows line endings of dos.txt to Unix ones in place.", "sed -i 's/\\r$//' dos.txt"),
    ("Print the requested path, the 7th field, of each POST line in access.log.", "awk '/POST/ {print $7}' access.log"),
    ("How long is the longest line in file.txt?", "wc -L file.txt"),
    ("Show lines 5 through 10 of notes.txt using head and tail.", "head -n 10 notes.txt | tail -n 6"),
    ("Pretty-print the JSON in data.json.", "jq . data.json"),
    ("Get the value of the name field from package.json.", "jq -r '.name' package.json"),
    ("List the top-level keys of config.json.", "jq 'keys' config.json"),
    ("How many elements are in the JSON array in items.json?", "jq 'length' items.json"),
    ("Hex dump the first 64 bytes of firmware.bin.", "xxd -l 64 firmware.bin"),
    ("Print the readable strings inside the binary a.out.", "strings a.out"),
    ("Encode secret.txt as base64.", "base64 secret.txt"),
    ("Decode the base64 file encoded.txt.", "base64 -d encoded.txt"),
    ("Print the lines of words.txt that are exactly five letters long.", "grep -xE '[[:alpha:]]{5}' words.txt"),
    ("Show the words of dict.txt that are palindromes.", "awk '{r = \"\"; for (i = length($0); i > 0; i--) r = r substr($0, i, 1); if (r == $0) print}' dict.txt"),
    ("Replace tabs with four spaces in main.go and print the result.", "expand -t 4 main.go"),
    ("Print the line count of every .txt file in this folder, one file at a time.", "for f in ./*.txt; do wc -l \"$f\"; done"),
    # --- archives
    ("Pack the project folder into a gzip-compressed tarball project.tar.gz.", "tar -czf project.tar.gz project"),
    ("Unpack backup.tar.gz into the current directory.", "tar -xzf backup.tar.gz"),
    ("List what is inside archive.tar.gz without extracting it.", "tar -tzf archive.tar.gz"),
    ("Extract release.tar.xz into /opt/app.", "tar -xJf release.tar.xz -C /opt/app"),
    ("Create a bzip2-compressed tar archive of the docs folder.", "tar -cjf docs.tar.bz2 docs"),
    ("Archive src into src.tar.gz but leave out every node_modules folder.", "tar --exclude=node_modules -czf src.tar.gz src"),
    ("Compress big.log with gzip but keep the original file.", "gzip -k big.log"),
    ("Decompress data.csv.gz.", "gunzip data.csv.gz"),
    ("Print the contents of notes.txt.gz without unpacking it to disk.", "zcat notes.txt.gz"),
    ("Zip the photos folder and everything in it into photos.zip.", "zip -r photos.zip photos"),
    ("Unzip site.zip into the directory site.", "unzip site.zip -d site"),
    ("List the files inside bundle.zip.", "unzip -l bundle.zip"),
    ("Compress dump.sql with xz at the highest level.", "xz -9 dump.sql"),
    ("Extract only config/app.yaml from release.tar.gz.", "tar -xzf release.tar.gz config/app.yaml"),
    ("Append extra.txt to the existing archive files.tar.", "tar -rf files.tar extra.txt"),
    ("Check that archive.zip is not corrupted.", "unzip -t archive.zip"),
    # --- git
    ("Show the git status in the short format.", "git status -s"),
    ("Show the last 10 commits, one line each.", "git log --oneline -n 10"),
    ("Draw the commit history of all branches as a graph.", "git log --oneline --graph --all"),
    ("What changes are staged for the next commit?", "git diff --staged"),
    ("Show my unstaged changes.", "git diff"),
    ("List all local and remote branches.", "git branch -a"),
    ("Create a branch called feature/login and switch to it.", "git switch -c feature/login"),
    ("Switch to the main branch.", "git switch main"),
    ("Stage every change in the current directory.", "git add ."),
    ("Commit the staged changes with the message Fix typo.", "git commit -m \"Fix typo\""),
    ("Who last changed each line of app.py?", "git blame app.py"),
    ("Show the commits that touched README.md, following renames.", "git log --follow -- README.md"),
    ("Fetch from origin without merging anything.", "git fetch origin"),
    ("Pull the latest main from origin and rebase my work on top.", "git pull --rebase origin main"),
    ("Show the remote URLs of this repository.", "git remote -v"),
    ("List the tags of the repository.", "git tag -l"),
    ("Which files did the last commit change?", "git show --stat HEAD"),
    ("Put my uncommitted changes aside in the stash.", "git stash"),
    ("Print the name of the current git branch.", "git rev-parse --abbrev-ref HEAD"),
    ("How many commits are on the current branch?", "git rev-list --count HEAD"),
    ("List the files tracked by git.", "git ls-files"),
    ("Show alice's commits from the last two weeks.", "git log --author=alice --since='2 weeks ago' --oneline"),
    ("Throw away my unstaged edits to config.yaml.", "git restore config.yaml"),
    ("Clone https://github.com/example/tool.git with only the latest commit.", "git clone --depth 1 https://github.com/example/tool.git"),
    ("Show the diff of the last commit.", "git show HEAD"),
    # --- processes and services
    ("List every running process with user, CPU and memory.", "ps aux"),
    ("Which 5 processes use the most memory?", "ps aux --sort=-%mem | head -n 6"),
    ("Show the processes using the most CPU, with PID and name.", "ps -eo pid,comm,%cpu --sort=-%cpu | head"),
    ("Get the PIDs of all processes named nginx.", "pgrep nginx"),
    ("Show the processes as a tree.", "pstree"),
    ("Ask the process with PID 4321 to terminate.", "kill 4321"),
    ("Stop all processes named firefox.", "pkill firefox"),
    ("Print one snapshot of top in batch mode.", "top -b -n 1"),
    ("How long has the machine been up, and what is the load?", "uptime"),
    ("Which process is listening on port 8080?", "lsof -i :8080"),
    ("Run ./long_job.sh in the background so it survives logout, logging to job.log.", "nohup ./long_job.sh > job.log 2>&1 &"),
    ("List the background jobs of this shell with their PIDs.", "jobs -l"),
    ("Show the files opened by the process with PID 1234.", "lsof -p 1234"),
    ("Run ./backup.sh with the lowest CPU priority.", "nice -n 19 ./backup.sh"),
    ("Measure how long make takes.", "time make"),
    ("Show the status of the ssh service.", "systemctl status ssh"),
    ("Show the last 20 lines of the system journal.", "journalctl -n 20"),
    ("Follow the journal of the nginx service.", "journalctl -u nginx -f"),
    ("Rerun make test every 5 seconds and show the output.", "watch -n 5 make test"),
    # --- disks and memory
    ("Show free space on all mounted file systems in human-readable units.", "df -h"),
    ("How much space does the current directory take in total?", "du -sh ."),
    ("Show the size of each item in the current folder, smallest to largest.", "du -sh ./* | sort -h"),
    ("Which 5 directories directly under /var are the biggest?", "du -h /var --max-depth=1 | sort -rh | head -n 5"),
    ("Show inode usage of the file systems.", "df -i"),
    ("Show memory usage in megabytes.", "free -m"),
    ("List the block devices and where they are mounted.", "lsblk"),
    ("Show the mounted ext4 file systems.", "findmnt -t ext4"),
    ("Show the type and usage of the root file system.", "df -hT /"),
    ("Show the size of each folder in my home directory, one level deep, sorted.", "du -h --max-depth=1 ~ | sort -h"),
    # --- networking, read-only
    ("Show only the HTTP response headers of https://example.com.", "curl -I https://example.com"),
    ("Download https://example.com/file.tar.gz, following redirects, keeping its name.", "curl -LO https://example.com/file.tar.gz"),
    ("Download https://example.com/big.iso with wget and resume if it was interrupted.", "wget -c https://example.com/big.iso"),
    ("Print just the HTTP status code of https://example.com.", "curl -s -o /dev/null -w '%{http_code}\\n' https://example.com"),
    ("POST the JSON {\"name\": \"test\"} to http://localhost:8000/api.", "curl -X POST -H 'Content-Type: application/json' -d '{\"name\": \"test\"}' http://localhost:8000/api"),
    ("Ping example.com four times.", "ping -c 4 example.com"),
    ("What IP address does example.com resolve to?", "dig +short example.com"),
    ("Show the MX records of example.com.", "dig +short MX example.com"),
    ("Trace the network route to example.com.", "traceroute example.com"),
    ("Show the IP addresses of my network interfaces.", "ip addr show"),
    ("Show the routing table.", "ip route"),
    ("List the listening TCP ports with the processes behind them.", "ss -tlnp"),
    ("Check whether port 443 on example.com accepts connections.", "nc -zv example.com 443"),
    ("What is my public IP address?", "curl -s https://ifconfig.me"),
    ("Copy report.pdf to bob's home directory on server.example.com over SSH.", "scp report.pdf bob@server.example.com:~/"),
    ("Open an SSH session as admin on server.example.com, port 2222.", "ssh -p 2222 admin@server.example.com"),
    ("Mirror the site folder to /var/www/site on server over SSH, showing progress.", "rsync -avz --progress site/ user@server:/var/www/site/"),
    ("Show when the TLS certificate of example.com expires.", "openssl s_client -connect example.com:443 -servername example.com < /dev/null 2>/dev/null | openssl x509 -noout -dates"),
    ("Print the hostname of this machine.", "hostname"),
    ("Fetch the GitHub API entry for git/git and print its star count.", "curl -s https://api.github.com/repos/git/git | jq '.stargazers_count'"),
    ("Download a web page quietly and print it to standard output.", "wget -qO- https://example.com"),
    # --- permissions and users
    ("Make deploy.sh executable.", "chmod +x deploy.sh"),
    ("Let only the owner read and write secrets.env.", "chmod 600 secrets.env"),
    ("Set the permissions of index.html to rw-r--r--.", "chmod 644 index.html"),
    ("Make www-data the owner of app.log.", "sudo chown www-data app.log"),
    ("Change the group of shared.txt to developers.", "chgrp developers shared.txt"),
    ("Show the permissions of ~/.ssh/id_rsa as an octal number.", "stat -c '%a %n' ~/.ssh/id_rsa"),
    ("Take away write permission from group and others on report.txt.", "chmod go-w report.txt"),
    ("Make the directory private accessible only to its owner.", "chmod 700 private"),
    ("Which groups am I in?", "id -Gn"),
    ("Show my user ID, group ID and groups.", "id"),
    ("Show the default permission mask for new files.", "umask"),
    ("Which user am I logged in as?", "whoami"),
    ("Show the recent logins on this machine.", "last -n 10"),
    # --- dates, environment and the shell
    ("Show the current date and time.", "date"),
    ("Print today's date as YYYY-MM-DD.", "date +%F"),
    ("Print the current Unix timestamp.", "date +%s"),
    ("Convert the Unix timestamp 1700000000 into a readable date.", "date -d @1700000000"),
    ("What date is it 30 days from now?", "date -d '+30 days' +%F"),
    ("Show this month's calendar.", "cal"),
    ("Show the current time in UTC.", "date -u"),
    ("Print the PATH variable.", "echo \"$PATH\""),
    ("List all environment variables.", "printenv"),
    ("Set EDITOR to vim for this shell and the programs it starts.", "export EDITOR=vim"),
    ("Run make with DEBUG=1 set for that one command only.", "DEBUG=1 make"),
    ("Print each directory in PATH on its own line.", "tr ':' '\\n' <<< \"$PATH\""),
    ("Where is the python3 executable?", "command -v python3"),
    ("Show the kernel version.", "uname -r"),
    ("Print all the system information uname knows.", "uname -a"),
    ("Which Linux distribution and version is this?", "cat /etc/os-release"),
    ("How many CPU cores does this machine have?", "nproc"),
    ("Print the numbers 1 to 10, one per line.", "seq 1 10"),
    ("Generate a random 16-character hex string.", "openssl rand -hex 8"),
    ("Compute the SHA-256 checksum of ubuntu.iso.", "sha256sum ubuntu.iso"),
    ("Check the files listed in SHA256SUMS against their checksums.", "sha256sum -c SHA256SUMS"),
    ("Compute the MD5 checksum of file.zip.", "md5sum file.zip"),
    ("Rename every .jpeg file in this folder to .jpg.", "for f in ./*.jpeg; do mv -- \"$f\" \"${f%.jpeg}.jpg\"; done"),
    ("Run make and print Build succeeded only if it worked.", "make && echo 'Build succeeded'"),
    ("Write the text hello world into output.txt.", "echo 'hello world' > output.txt"),
    ("Save the process list to processes.txt and show it on screen too.", "ps aux | tee processes.txt"),
    ("Open the manual page of rsync.", "man rsync"),
    ("Check deploy.sh for syntax errors without running it.", "bash -n deploy.sh"),
    ("Is cd a builtin, an alias or a program?", "type cd"),
    ("Append the current date to log.txt.", "date >> log.txt"),
    ("Print the name of the shell I am using.", "echo \"$SHELL\""),
    ("Print the exit status of the previous command.", "echo \"$?\""),
    ("Count the files in each subdirectory of the current folder.", "for d in ./*/; do printf '%s %s\\n' \"$(find \"$d\" -type f | wc -l)\" \"$d\"; done"),
    ("Show the 10 commands I used most often in my bash history file.", "awk '{print $1}' ~/.bash_history | sort | uniq -c | sort -rn | head -n 10"),
    ("Wait 30 seconds.", "sleep 30"),
    ("Print a random number between 1 and 100.", "shuf -i 1-100 -n 1"),
    ("Shuffle the lines of playlist.txt.", "shuf playlist.txt"),
    ("Convert the image photo.png to JPEG with ImageMagick.", "convert photo.png photo.jpg"),
    ("Show the Python version.", "python3 --version"),
    ("List the installed Python packages.", "pip list"),
    ("Start a simple web server for the current directory on port 8000.", "python3 -m http.server 8000"),
]


def splits(pairs: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """Seeded shuffle, then test and val take their share and train the rest, in the list's order."""
    order = list(range(len(pairs)))
    random.Random(SEED).shuffle(order)
    counts = {name: round(len(pairs) * share) for name, share in SHARES.items()}
    chosen = {"test": set(order[:counts["test"]]),
              "val": set(order[counts["test"]:counts["test"] + counts["val"]])}
    result: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
    for index, pair in enumerate(pairs):
        name = next((n for n, members in chosen.items() if index in members), "train")
        result[name].append(pair)
    return result


def check_unique(pairs: list[tuple[str, str]]) -> None:
    """Every prompt and every command once, so no split can leak into another."""
    for position, normalize in ((0, normalize_prompt), (1, normalize_command)):
        seen: dict[str, int] = {}
        for index, pair in enumerate(pairs):
            key = normalize(pair[position])
            if key in seen:
                raise SystemExit(f"pair {index} repeats pair {seen[key]}: {pair[position]!r}")
            seen[key] = index


def to_jsonl(pairs: list[tuple[str, str]]) -> str:
    return "".join(json.dumps({"messages": [{"role": "user", "content": prompt},
                                            {"role": "assistant", "content": command}]}, ensure_ascii=False) + "\n"
                   for prompt, command in pairs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/processed")
    parser.add_argument("--force", action="store_true", help="replace existing split files and manifest")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.force and any((out / f"{name}.jsonl").exists() for name in ("train", "val", "test")):
        print(f"error: split files already exist in {out}; pass --force to replace them", file=sys.stderr)
        return 2
    check_unique(PAIRS)
    for name, members in splits(PAIRS).items():
        atomic.write_text(out / f"{name}.jsonl", to_jsonl(members))
        print(f"{name}: {len(members)} pairs")
    path, _ = data.lock(out, force=True)
    print(f"locked in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
