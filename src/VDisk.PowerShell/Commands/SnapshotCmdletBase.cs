// The shared side of the snapshot cmdlets (Get-, Restore-, Remove-VDiskSnapshot): images by -Path/-LiteralPath,
// snapshots by -Name (wildcards) or -Id (bound by property name from VDiskSnapshot objects), and the completer
// that offers an image's snapshot names for -Name.
using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Base of the cmdlets that pick snapshots of images.</summary>
public abstract class SnapshotCmdletBase : ImageInputCmdletBase
{
    /// <summary>Snapshot names; wildcards are allowed.</summary>
    [Parameter(Position = 1)]
    [ArgumentCompleter(typeof(SnapshotNameCompleter))]
    [ValidateNotNullOrEmpty]
    public virtual string[]? Name { get; set; }

    /// <summary>Snapshot ids, exactly; bound by property name from VDiskSnapshot objects.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string[]? Id { get; set; }

    /// <summary>The snapshots that -Name and -Id pick among <paramref name="snapshots"/> (all of them when neither is given).</summary>
    protected IEnumerable<SnapshotInfo> Pick(IReadOnlyList<SnapshotInfo> snapshots)
    {
        var names = Name?.Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase)).ToList();
        return snapshots.Where(s => (Id is null || Id.Contains(s.Id)) && (names is null || names.Any(p => p.IsMatch(s.Name))));
    }

    /// <summary>A SnapshotNotFound error when -Name or -Id named something the image does not have.</summary>
    protected void ReportMissing(string image, IReadOnlyList<SnapshotInfo> snapshots, IEnumerable<SnapshotInfo> picked)
    {
        var found = picked.ToList();
        foreach (var id in Id ?? Array.Empty<string>())
            if (!found.Any(s => s.Id == id)) WriteError(VDiskErrors.SnapshotNotFound(image, $"id '{id}'", snapshots.Select(s => s.Name)));
        foreach (var name in Name ?? Array.Empty<string>())
            if (!WildcardPattern.ContainsWildcardCharacters(name) && !found.Any(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase)))
                WriteError(VDiskErrors.SnapshotNotFound(image, $"name '{name}'", snapshots.Select(s => s.Name)));
    }
}

/// <summary>Completes -Name with the snapshot names of the image given in -Path or -LiteralPath.</summary>
public sealed class SnapshotNameCompleter : IArgumentCompleter
{
    /// <inheritdoc/>
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        bool literal = fakeBoundParameters.Contains("LiteralPath");
        var image = (literal ? fakeBoundParameters["LiteralPath"] : fakeBoundParameters["Path"]) switch
        {
            string s => s,
            object[] { Length: > 0 } a => a[0]?.ToString(),
            _ => null,
        };
        if (image is null) yield break;
        IReadOnlyList<SnapshotInfo> snapshots;
        try
        {
            // The session's own path resolution (current location, wildcards), run nested in the completing pipeline.
            using var ps = System.Management.Automation.PowerShell.Create(RunspaceMode.CurrentRunspace);
            var resolved = ps.AddCommand("Resolve-Path").AddParameter(literal ? "LiteralPath" : "Path", image).AddParameter("ErrorAction", "Ignore")
                .Invoke<PathInfo>().FirstOrDefault();
            if (resolved is null) yield break;
            snapshots = SnapshotImage.List(resolved.ProviderPath);
        }
        catch (Exception e) when (e is Engine.Core.VDiskException or IOException or UnauthorizedAccessException or ArgumentException or RuntimeException)
        {
            yield break;
        }
        var pattern = new WildcardPattern(wordToComplete.Trim('\'', '"') + "*", WildcardOptions.IgnoreCase);
        foreach (var name in snapshots.Select(s => s.Name).Distinct().Where(pattern.IsMatch))
            yield return new CompletionResult(name.Contains(' ') ? $"'{name}'" : name, name, CompletionResultType.ParameterValue, name);
    }
}
