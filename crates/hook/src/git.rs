//! The git branch of a directory, read from `.git/HEAD` without forking git.

use std::fs;
use std::path::{Path, PathBuf};

/// The branch checked out in the repository containing `dir`; a short commit id when the
/// head is detached; `None` outside a repository.
pub(crate) fn branch(dir: &Path) -> Option<String> {
    let head = fs::read_to_string(git_dir(dir)?.join("HEAD")).ok()?;
    let head = head.trim();
    match head.strip_prefix("ref: ") {
        Some(reference) => Some(
            reference
                .strip_prefix("refs/heads/")
                .unwrap_or(reference)
                .to_string(),
        ),
        None if head.len() >= 8 && head.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(head[..8].to_string())
        }
        None => None,
    }
}

/// The `.git` directory for `dir`, walking up; follows a `gitdir:` file (worktrees).
fn git_dir(dir: &Path) -> Option<PathBuf> {
    for candidate in dir.ancestors().take(64) {
        let dot_git = candidate.join(".git");
        if dot_git.is_dir() {
            return Some(dot_git);
        }
        if dot_git.is_file() {
            let text = fs::read_to_string(&dot_git).ok()?;
            let target = text.trim().strip_prefix("gitdir:")?.trim();
            let target = Path::new(target);
            return Some(if target.is_absolute() {
                target.to_path_buf()
            } else {
                candidate.join(target)
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-git-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_the_branch_detached_heads_and_worktrees() {
        let repo = scratch("repo");
        fs::create_dir_all(repo.join(".git")).unwrap();
        fs::create_dir_all(repo.join("src/deep")).unwrap();
        fs::write(repo.join(".git/HEAD"), "ref: refs/heads/feature/x\n").unwrap();
        assert_eq!(branch(&repo.join("src/deep")).as_deref(), Some("feature/x"));
        fs::write(
            repo.join(".git/HEAD"),
            "0123456789abcdef0123456789abcdef01234567\n",
        )
        .unwrap();
        assert_eq!(branch(&repo).as_deref(), Some("01234567"));

        let worktree = scratch("worktree");
        fs::write(
            worktree.join(".git"),
            format!("gitdir: {}\n", repo.join(".git").display()),
        )
        .unwrap();
        fs::write(repo.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(branch(&worktree).as_deref(), Some("main"));

        let outside = scratch("outside");
        // The temp dir itself is not in a repository on any sane machine.
        if git_dir(&outside).is_none() {
            assert_eq!(branch(&outside), None);
        }
        let _ = fs::remove_dir_all(repo);
        let _ = fs::remove_dir_all(worktree);
        let _ = fs::remove_dir_all(outside);
    }
}
