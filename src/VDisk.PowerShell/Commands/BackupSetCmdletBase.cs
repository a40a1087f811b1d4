// The input side shared by Get-, Restore- and Test-VDiskBackup: -Path / -LiteralPath (PathInputCmdletBase) naming backup sets,
// a folder holding sets (one per image, as Backup-VDisk -Destination makes them), or one point's image inside a set
// (what Get-VDiskBackup writes as Path, so points bind by property name).
using System.Management.Automation;
using VDisk.Engine.Backup;
using VDisk.Engine.Core;

namespace VDisk.PowerShell.Commands;

/// <summary>Base of cmdlets that read backup sets.</summary>
public abstract class BackupSetCmdletBase : PathInputCmdletBase
{
    /// <summary>Waits for a backup or prune working on the set instead of failing with ImageInUse.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    /// <summary>Resolves the inputs and calls <see cref="ProcessSet"/> for each set (with the point's image, when one was named).</summary>
    protected override void ProcessRecord()
    {
        foreach (var (match, _) in ResolveInputs())
        {
            if (File.Exists(match) && System.IO.Path.GetDirectoryName(match) is { } folder && BackupSet.IsSet(folder))
                ProcessSet(folder, match);
            else if (Directory.Exists(match) && !BackupSet.IsSet(match) && SetsIn(match) is { Count: > 0 } sets)
                foreach (string set in sets) ProcessSet(set, null);
            else if (BackupSet.IsSet(match))
                ProcessSet(match, null);
            else
                WriteError(VDiskErrors.FromException(new VDiskException(VDiskErrorKind.NotFound, match,
                    $"{match} is not a backup set, a folder of backup sets, or a point's image in one."), match));
        }
    }

    /// <summary>Does the cmdlet's work for one set; <paramref name="pointImage"/> is the point's image when one was named.</summary>
    protected abstract void ProcessSet(string setFolder, string? pointImage);

    private static List<string> SetsIn(string folder) =>
        Directory.EnumerateDirectories(folder).Where(BackupSet.IsSet).Order(StringComparer.Ordinal).ToList();
}
