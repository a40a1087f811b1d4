// The input side shared by Get-, Restore- and Test-VDiskBackup: -Path (wildcards) or -LiteralPath naming backup sets,
// a folder holding sets (one per image, as Backup-VDisk -Destination makes them), or one point's image inside a set
// (what Get-VDiskBackup writes as Path, so points bind by property name).
using System.Management.Automation;
using VDisk.Engine.Backup;
using VDisk.Engine.Core;

namespace VDisk.PowerShell.Commands;

/// <summary>Base of cmdlets that read backup sets.</summary>
public abstract class BackupSetCmdletBase : VDiskCmdletBase
{
    /// <summary>Parameter set of -Path.</summary>
    protected const string PathSet = "Path";
    /// <summary>Parameter set of -LiteralPath.</summary>
    protected const string LiteralPathSet = "LiteralPath";

    /// <summary>Backup set folders, folders of sets, or points' images; wildcards are expanded.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = Array.Empty<string>();

    /// <summary>The same, taken exactly as written (no wildcards).</summary>
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
    [Alias("PSPath", "LP")]
    [ValidateNotNullOrEmpty]
    public string[] LiteralPath { get; set; } = Array.Empty<string>();

    /// <summary>Waits for a backup or prune working on the set instead of failing with ImageInUse.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    /// <summary>Resolves the inputs and calls <see cref="ProcessSet"/> for each set (with the point's image, when one was named).</summary>
    protected override void ProcessRecord()
    {
        bool literal = ParameterSetName == LiteralPathSet;
        foreach (string input in literal ? LiteralPath : Path)
        {
            var matches = literal ? (ResolveLiteralPath(input) is { } full ? new[] { full } : Array.Empty<string>()) : ResolveWildcardPath(input);
            foreach (string match in matches)
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
    }

    /// <summary>Does the cmdlet's work for one set; <paramref name="pointImage"/> is the point's image when one was named.</summary>
    protected abstract void ProcessSet(string setFolder, string? pointImage);

    private static List<string> SetsIn(string folder) =>
        Directory.EnumerateDirectories(folder).Where(BackupSet.IsSet).Order(StringComparer.Ordinal).ToList();
}
