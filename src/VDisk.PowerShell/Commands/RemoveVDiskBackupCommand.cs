// Remove-VDiskBackup: prunes backup sets with restic's retention rules (-KeepLast/-KeepHourly/-KeepDaily/-KeepWeekly/
// -KeepMonthly/-KeepYearly) and/or removes points by -Time; the newest point always stays. Removed points are merged
// into the next kept point of their chain, so every kept point restores as before. The plan is made first and each
// point to go is put to ShouldProcess (ConfirmImpact High: it deletes backups; a scheduled job passes
// -Confirm:$false), so -WhatIf lists what would go and changes nothing, and points declined at -Confirm stay; the
// points accepted are then removed by time in one engine prune (crash-safe, see the engine's PruneBackup).
using System.Management.Automation;
using System.Security;
using VDisk.Engine.Backup;

namespace VDisk.PowerShell.Commands;

/// <summary>Removes restore points from backup sets by retention rules or by time.</summary>
[Cmdlet(VerbsCommon.Remove, "VDiskBackup", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(VDiskBackupPrune))]
public sealed class RemoveVDiskBackupCommand : VDiskCmdletBase
{
    /// <summary>The passphrase of an encrypted backup set, needed when removing points rewrites the next kept one.</summary>
    [Parameter]
    [PassphraseTransformation]
    public SecureString[]? Passphrase { get; set; }

    /// <summary>Files whose first lines are passphrases of the encrypted set (like QEMU's secret,file=).</summary>
    [Parameter]
    public string[]? PassphraseFile { get; set; }

    /// <summary>Error id when neither a -Keep* rule nor -Time is given.</summary>
    public const string RuleRequiredId = "RetentionRuleRequired";

    /// <summary>Backup set folders (wildcards allowed), or points' images (Get-VDiskBackup output binds by Path and Time).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = Array.Empty<string>();

    /// <summary>Keep the n newest points.</summary>
    [Parameter, ValidateRange(-1, int.MaxValue)]
    public int KeepLast { get; set; }

    /// <summary>For the last n hours that have points, keep the newest of each.</summary>
    [Parameter, ValidateRange(-1, int.MaxValue)]
    public int KeepHourly { get; set; }

    /// <summary>For the last n days that have points, keep the newest of each.</summary>
    [Parameter, ValidateRange(-1, int.MaxValue)]
    public int KeepDaily { get; set; }

    /// <summary>For the last n ISO weeks (Monday to Sunday) that have points, keep the newest of each.</summary>
    [Parameter, ValidateRange(-1, int.MaxValue)]
    public int KeepWeekly { get; set; }

    /// <summary>For the last n months that have points, keep the newest of each.</summary>
    [Parameter, ValidateRange(-1, int.MaxValue)]
    public int KeepMonthly { get; set; }

    /// <summary>For the last n years that have points, keep the newest of each.</summary>
    [Parameter, ValidateRange(-1, int.MaxValue)]
    public int KeepYearly { get; set; }

    /// <summary>Points to remove, by the time they were taken (whatever the rules say); bound from piped points.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public DateTime[]? Time { get; set; }

    /// <summary>The time zone whose calendar days, weeks, months and years the rules follow (default: this machine's).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? TimeZone { get; set; }

    /// <summary>Wait for another command using the set instead of failing.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    /// <summary>Also write the points kept (and rewritten), not only those removed.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private readonly Dictionary<string, List<DateTime>> _sets = new(StringComparer.Ordinal);
    private RetentionPolicy _policy = new();
    private TimeZoneInfo _zone = TimeZoneInfo.Local;

    /// <summary>Checks that a rule or -Time is given, and the time zone.</summary>
    protected override void BeginProcessing()
    {
        InputPassphrases = ReadPassphrases(Passphrase, PassphraseFile);
        _policy = new RetentionPolicy
        {
            KeepLast = KeepLast, KeepHourly = KeepHourly, KeepDaily = KeepDaily,
            KeepWeekly = KeepWeekly, KeepMonthly = KeepMonthly, KeepYearly = KeepYearly,
        };
        if (_policy.IsEmpty && !IsBound(nameof(Time)) && !MyInvocation.ExpectingInput)
            ThrowTerminatingError(new ErrorRecord(new ArgumentException(
                "Say which points to keep (-KeepLast, -KeepHourly, -KeepDaily, -KeepWeekly, -KeepMonthly, -KeepYearly) or which to remove (-Time); " +
                "Remove-VDiskBackup never removes points without a rule."), RuleRequiredId, ErrorCategory.InvalidArgument, null));
        if (TimeZone is null) return;
        try
        {
            _zone = TimeZoneInfo.FindSystemTimeZoneById(TimeZone);
        }
        catch (TimeZoneNotFoundException e)
        {
            ThrowTerminatingError(new ErrorRecord(new ArgumentException($"'{TimeZone}' is not a time zone this system knows (for example UTC, Europe/Berlin).", e),
                "UnknownTimeZone", ErrorCategory.InvalidArgument, TimeZone));
        }
    }

    /// <summary>Collects the sets (a point's image stands for its set) and the times to remove from each.</summary>
    protected override void ProcessRecord()
    {
        foreach (string typed in Path)
            foreach (string match in ResolveWildcardPath(typed))
            {
                string folder = File.Exists(match) && System.IO.Path.GetDirectoryName(match) is { } parent && BackupSet.IsSet(parent) ? parent : match;
                if (!_sets.TryGetValue(folder, out var times)) _sets[folder] = times = new List<DateTime>();
                times.AddRange(Time ?? Array.Empty<DateTime>());
            }
    }

    /// <summary>Prunes each set once, with every time given for it.</summary>
    protected override void EndProcessing()
    {
        foreach (var (folder, times) in _sets)
        {
            if (_policy.IsEmpty && times.Count == 0)
                WriteError(new ErrorRecord(new ArgumentException($"{folder}: no rule and no point to remove was given; nothing is removed."),
                    RuleRequiredId, ErrorCategory.InvalidArgument, folder));
            else
                Prune(folder, times);
        }
    }

    private void Prune(string folder, List<DateTime> times)
    {
        var options = new PruneOptions
        {
            Policy = _policy.IsEmpty ? null : _policy, TimeZone = _zone, Wait = Wait,
            Remove = times.Distinct().Select(t => new DateTimeOffset(t)).ToList(), // UTC, or else local time
        };
        if (Attempt(folder, () => PruneBackup.Plan(folder, options)) is not { } plan) return;
        var accepted = plan.Where(d => d.Action == PruneAction.Remove && ShouldProcess(folder, Describe(d))).Select(d => d.Point.Time).ToList();
        if (accepted.Count == 0) return; // nothing to remove, -WhatIf, or every point declined
        var run = options with { Policy = null, Remove = accepted };
        if (Attempt(folder, () => RunWithProgress("Remove-VDiskBackup", $"Pruning {folder}", 0,
                (meter, cancel) => PruneBackup.Run(folder, run, meter, cancel))) is not { } result) return;
        foreach (string warning in result.Warnings) WriteWarning(warning);
        foreach (var d in result.Decisions.Where(d => PassThru || d.Action == PruneAction.Remove))
            WriteObject(VDiskBackupPrune.From(result.SetPath, d with { Reasons = Reasons(plan, d) }));
    }

    // The plan's reasons (restic's rule names), as the run itself removes by time and would say only "requested";
    // a point declined at -Confirm keeps the run's own reason.
    private static IReadOnlyList<string> Reasons(IReadOnlyList<PruneDecision> plan, PruneDecision d) =>
        plan.FirstOrDefault(p => p.Point.Time == d.Point.Time) is { } planned && (planned.Action == PruneAction.Remove) == (d.Action == PruneAction.Remove)
            ? planned.Reasons : d.Reasons;

    private static string Describe(PruneDecision d) =>
        $"Remove backup point {d.Point.Time.LocalDateTime:yyyy-MM-dd HH:mm:ss} ({d.Point.Kind}, {d.Point.File}): " +
        (d.MergedInto is { } into ? $"merge it into the point of {into.LocalDateTime:yyyy-MM-dd HH:mm:ss}" : "delete it");
}
