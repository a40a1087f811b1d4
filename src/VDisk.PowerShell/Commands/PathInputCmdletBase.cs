// The -Path (wildcards) / -LiteralPath (alias PSPath, so Get-ChildItem output binds by property name) pair every
// cmdlet that takes existing files or folders shares, resolved through the session's provider paths (DESIGN.md
// "Cmdlets": paths). What an input must be (an image, a backup set, a folder to measure in) is the subclass's call.
using System.Management.Automation;

namespace VDisk.PowerShell.Commands;

/// <summary>Base of cmdlets that take existing paths by -Path or -LiteralPath.</summary>
public abstract class PathInputCmdletBase : VDiskCmdletBase
{
    /// <summary>Parameter set of -Path.</summary>
    protected const string PathSet = "Path";
    /// <summary>Parameter set of -LiteralPath.</summary>
    protected const string LiteralPathSet = "LiteralPath";

    /// <summary>Paths; wildcards are expanded.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = Array.Empty<string>();

    /// <summary>Paths taken exactly as written (no wildcards).</summary>
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
    [Alias("PSPath", "LP")]
    [ValidateNotNullOrEmpty]
    public string[] LiteralPath { get; set; } = Array.Empty<string>();

    private bool _literalPathTyped;

    /// <summary>Notes whether -LiteralPath was typed (rather than bound later from piped items).</summary>
    protected override void BeginProcessing() => _literalPathTyped = IsBound(nameof(LiteralPath));

    /// <summary>
    /// The full paths this record's inputs name (errors for those that cannot be resolved are written), each with
    /// whether it was matched implicitly (by a wildcard, or as an item piped by PSPath) rather than named explicitly.
    /// </summary>
    protected IEnumerable<(string FullPath, bool Implicit)> ResolveInputs()
    {
        bool literal = ParameterSetName == LiteralPathSet;
        foreach (string input in literal ? LiteralPath : Path)
        {
            bool matched = literal ? !_literalPathTyped : WildcardPattern.ContainsWildcardCharacters(input);
            var resolved = literal ? (ResolveLiteralPath(input) is { } full ? new[] { full } : Array.Empty<string>()) : ResolveWildcardPath(input);
            foreach (string path in resolved) yield return (path, matched);
        }
    }
}
