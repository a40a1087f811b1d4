// The input side shared by cmdlets that read existing images: -Path (wildcards) and -LiteralPath (alias
// PSPath, so Get-ChildItem output binds by property name), resolved to files, one engine call per file.
using System.Management.Automation;

namespace VDisk.PowerShell.Commands;

/// <summary>Base of cmdlets that take existing images by -Path or -LiteralPath.</summary>
public abstract class ImageInputCmdletBase : VDiskCmdletBase
{
    /// <summary>Parameter set of -Path.</summary>
    protected const string PathSet = "Path";
    /// <summary>Parameter set of -LiteralPath.</summary>
    protected const string LiteralPathSet = "LiteralPath";

    /// <summary>Image paths; wildcards are expanded. Directories matched by a wildcard are skipped.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = Array.Empty<string>();

    /// <summary>Image paths taken exactly as written (no wildcards).</summary>
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
    [Alias("PSPath", "LP")]
    [ValidateNotNullOrEmpty]
    public string[] LiteralPath { get; set; } = Array.Empty<string>();

    private bool _literalPathTyped;

    /// <summary>Notes whether -LiteralPath was typed (rather than bound later from piped items).</summary>
    protected override void BeginProcessing() => _literalPathTyped = IsBound(nameof(LiteralPath));

    /// <summary>
    /// Resolves every input path and hands each image file to <see cref="ProcessImage"/>. Folders are skipped
    /// quietly when a wildcard matched them or when they came down the pipeline as items (Get-ChildItem output,
    /// bound by PSPath); a folder named explicitly is reported as not an image.
    /// </summary>
    protected override void ProcessRecord()
    {
        bool literal = ParameterSetName == LiteralPathSet;
        foreach (string input in literal ? LiteralPath : Path)
        {
            bool skipFolders = literal ? !_literalPathTyped : WildcardPattern.ContainsWildcardCharacters(input);
            foreach (string file in literal ? Literal(input) : ResolveWildcardPath(input))
            {
                if (skipFolders && Directory.Exists(file))
                {
                    WriteVerbose($"Skipping folder '{file}'.");
                    continue;
                }
                ProcessImage(file);
            }
        }
    }

    /// <summary>Does the cmdlet's work for one resolved image path (which may not exist or be a folder).</summary>
    protected abstract void ProcessImage(string fullPath);

    private IEnumerable<string> Literal(string input) =>
        ResolveLiteralPath(input) is { } full ? new[] { full } : Array.Empty<string>();
}
