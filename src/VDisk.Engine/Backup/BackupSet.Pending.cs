// Finishing a prune the manifest says is pending (issue 11 "Safety"; the reasoning is in PruneBackup.cs). The
// manifest already lists the final points; what is left is mechanical and idempotent: rename each new file over the
// point file it replaces (when the new file is still there), make the renames durable, delete the removed points'
// files, then write the manifest without the pending list. Any writer does this first when it opens the set (the
// next backup, prune or Test-VDiskBackup), and a reader has a writer do it before it reads, so nothing reads a
// point's file while the manifest and the file may disagree.
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Backup;

public sealed partial class BackupSet
{
    private static readonly AsyncLocal<Action<string>?> StepObserver = new();

    /// <summary>
    /// For crash tests: called after each durable step of a prune (a file written, the manifest saved, a rename, a
    /// deletion) with a description of it, in this async flow only; throwing from it stops the prune right there.
    /// </summary>
    internal static Action<string>? Steps
    {
        get => StepObserver.Value;
        set => StepObserver.Value = value;
    }

    /// <summary>Reports a completed step to <see cref="Steps"/>.</summary>
    internal static void Step(string description) => StepObserver.Value?.Invoke(description);

    /// <summary>
    /// Completes the renames and deletions of a pending prune, then records the set as committed;
    /// <paramref name="interrupted"/>: the prune that began it has ended (a warning says it was finished).
    /// </summary>
    internal void FinishPending(bool interrupted)
    {
        if (Manifest?.Pending is not { } pending) return;
        foreach (var rename in pending.Renames)
        {
            if (!File.Exists(PathOf(rename.From))) continue; // done before an interruption
            File.Move(PathOf(rename.From), PathOf(rename.To), overwrite: true);
            Step($"renamed {rename.From} to {rename.To}");
        }
        HostFileSync.Directory(Folder); // every rename is durable before any file its old content read through goes
        foreach (string name in pending.Deletes)
        {
            if (!File.Exists(PathOf(name))) continue;
            File.Delete(PathOf(name));
            Step($"deleted {name}");
        }
        HostFileSync.Directory(Folder);
        Save(Manifest with { Pending = null });
        Step("manifest saved without the pending prune");
        if (interrupted)
            EngineWarnings.Warn($"Finished a prune of the backup set {Folder} that was interrupted; every point it kept is in place.");
    }
}
