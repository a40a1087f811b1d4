<#
.SYNOPSIS
    Turns the PlatyPS-style markdown in docs/<culture>/ into the help files Get-Help reads: MAML for the
    cmdlets (VDisk.PowerShell.dll-Help.xml) and plain text for about topics (about_*.help.txt).
.DESCRIPTION
    PlatyPS is not installable here, so this converter reads the same layout PlatyPS writes: YAML front
    matter; ## SYNOPSIS, SYNTAX (one ### per parameter set, "(Default)" marks the default), DESCRIPTION,
    EXAMPLES (### Example N with a ```powershell block and remarks), PARAMETERS (### -Name, a description and a
    ```yaml block), INPUTS, OUTPUTS, NOTES, RELATED LINKS. The syntax blocks are built from the parameters'
    yaml (Parameter Sets, Position, Required), so they cannot drift from the parameter list.
    A document missing a synopsis, a description, an example or a parameter description stops the build.
#>
[CmdletBinding()]
param(
    # Folder of the markdown help (docs/en-US).
    [Parameter(Mandatory)] [string] $DocsPath,
    # The MAML file to write.
    [Parameter(Mandatory)] [string] $MamlPath,
    # Folder for about_*.help.txt files.
    [Parameter(Mandatory)] [string] $AboutFolder
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$ns = @{
    maml    = 'http://schemas.microsoft.com/maml/2004/10'
    command = 'http://schemas.microsoft.com/maml/dev/command/2004/10'
    dev     = 'http://schemas.microsoft.com/maml/dev/2004/10'
}

# Splits lines into blocks under headings of the given level: an ordered list of @{ Title; Lines }.
function Split-Heading([string[]] $Lines, [int] $Level) {
    $marker = ('#' * $Level) + ' '
    $blocks = [System.Collections.Generic.List[object]]::new()
    $current = [pscustomobject]@{ Title = ''; Lines = [System.Collections.Generic.List[string]]::new() }
    $inFence = $false
    foreach ($line in $Lines) {
        if ($line.StartsWith('```')) { $inFence = -not $inFence }
        if (-not $inFence -and $line.StartsWith($marker)) {
            $blocks.Add($current)
            $current = [pscustomobject]@{ Title = $line.Substring($marker.Length).Trim(); Lines = [System.Collections.Generic.List[string]]::new() }
        } else {
            $current.Lines.Add($line)
        }
    }
    $blocks.Add($current)
    $blocks
}

# Paragraphs of the prose outside code fences: blank lines separate them, list items stand alone.
function Get-Paragraph([string[]] $Lines) {
    $paragraphs = [System.Collections.Generic.List[string]]::new()
    $buffer = [System.Collections.Generic.List[string]]::new()
    $inFence = $false
    $flush = { if ($buffer.Count) { $paragraphs.Add(($buffer -join ' ')); $buffer.Clear() } }
    foreach ($line in $Lines) {
        if ($line.StartsWith('```')) { $inFence = -not $inFence; & $flush; continue }
        if ($inFence) { continue }
        $text = $line.Trim()
        if (-not $text) { & $flush; continue }
        if ($text -match '^[-*] ') { & $flush }
        $buffer.Add($text)
    }
    & $flush
    , $paragraphs.ToArray()
}

# Fenced code blocks: a list of @{ Language; Text }.
function Get-CodeBlock([string[]] $Lines) {
    $blocks = [System.Collections.Generic.List[object]]::new()
    $current = $null
    foreach ($line in $Lines) {
        if ($line.StartsWith('```')) {
            if ($null -eq $current) { $current = @{ Language = $line.Substring(3).Trim(); Body = [System.Collections.Generic.List[string]]::new() } }
            else { $blocks.Add([pscustomobject]@{ Language = $current.Language; Text = ($current.Body -join "`n") }); $current = $null }
        } elseif ($null -ne $current) {
            $current.Body.Add($line)
        }
    }
    $blocks
}

function Get-Section($Sections, [string] $Name) {
    $found = @($Sections | Where-Object Title -EQ $Name)
    if ($found.Count -ne 1) { throw "$script:CurrentFile`: needs exactly one '## $Name' section." }
    [string[]] $found[0].Lines
}

# Reads one cmdlet's markdown into a help description.
function Read-CommandHelp([string] $File) {
    $script:CurrentFile = $File
    $lines = [string[]](Get-Content -LiteralPath $File)
    if ($lines[0] -eq '---') {
        $end = [Array]::IndexOf($lines, '---', 1)
        $lines = $lines[($end + 1)..($lines.Count - 1)]
    }
    $title = @(Split-Heading $lines 1)
    $name = $title[1].Title
    $sections = @(Split-Heading $title[1].Lines 2)

    $synopsis = Get-Paragraph (Get-Section $sections 'SYNOPSIS')
    $description = Get-Paragraph (Get-Section $sections 'DESCRIPTION')
    if (-not $synopsis -or -not $description) { throw "$File`: SYNOPSIS and DESCRIPTION must not be empty." }

    $sets = foreach ($s in Split-Heading (Get-Section $sections 'SYNTAX') 3 | Where-Object Title) {
        @{ Name = ($s.Title -replace '\s*\(Default\)$', ''); Default = $s.Title.EndsWith('(Default)') }
    }
    $examples = foreach ($e in Split-Heading (Get-Section $sections 'EXAMPLES') 3 | Where-Object Title) {
        $code = @(Get-CodeBlock $e.Lines | Where-Object Language -EQ 'powershell')
        if (-not $code) { throw "$File`: example '$($e.Title)' has no powershell code block." }
        @{ Title = $e.Title; Code = ($code.Text -join "`n"); Remarks = Get-Paragraph $e.Lines }
    }
    if (-not $examples) { throw "$File`: needs at least one example." }

    $parameters = foreach ($p in Split-Heading (Get-Section $sections 'PARAMETERS') 3 | Where-Object { $_.Title -like '-*' }) {
        $yaml = @(Get-CodeBlock $p.Lines | Where-Object Language -EQ 'yaml')
        if (-not $yaml) { throw "$File`: parameter $($p.Title) needs a yaml block." }
        $text = Get-Paragraph $p.Lines
        if (-not $text) { throw "$File`: parameter $($p.Title) has no description." }
        # One yaml block per group of parameter sets in which the parameter differs (as PlatyPS writes it).
        foreach ($block in $yaml) {
            $fields = @{}
            foreach ($row in $block.Text -split "`n") {
                if ($row -match '^([^:]+):\s*(.*)$') { $fields[$Matches[1].Trim()] = $Matches[2].Trim() }
            }
            @{ Name = $p.Title.Substring(1); Description = $text; Fields = $fields }
        }
    }

    $links = foreach ($line in Get-Section $sections 'RELATED LINKS') {
        if ($line -match '^\[(?<text>[^\]]+)\]\((?<uri>[^)]*)\)') { @{ Text = $Matches.text; Uri = $Matches.uri } }
    }
    @{
        Name        = $name
        Synopsis    = $synopsis
        Description = $description
        Sets        = @($sets)
        Examples    = @($examples)
        Parameters  = @($parameters)
        Inputs      = @(Split-Heading (Get-Section $sections 'INPUTS') 3 | Where-Object Title)
        Outputs     = @(Split-Heading (Get-Section $sections 'OUTPUTS') 3 | Where-Object Title)
        Notes       = Get-Paragraph (Get-Section $sections 'NOTES')
        Links       = @($links)
    }
}

function Write-Para([System.Xml.XmlWriter] $W, [string[]] $Paragraphs) {
    if (-not $Paragraphs) { $W.WriteElementString('para', $ns.maml, ''); return }
    foreach ($p in $Paragraphs) { $W.WriteElementString('para', $ns.maml, $p) }
}

function Write-Description([System.Xml.XmlWriter] $W, [string[]] $Paragraphs) {
    $W.WriteStartElement('description', $ns.maml); Write-Para $W $Paragraphs; $W.WriteEndElement()
}

function Write-Parameter([System.Xml.XmlWriter] $W, $P) {
    $f = $P.Fields
    $type = $f['Type']
    $isSwitch = $type -eq 'SwitchParameter'
    $pipeline = if ($f['Accept pipeline input']) { $f['Accept pipeline input'] } else { 'False' }
    $W.WriteStartElement('parameter', $ns.command)
    $W.WriteAttributeString('required', $f['Required'].ToLowerInvariant())
    $W.WriteAttributeString('variableLength', ($type -like '*`[`]').ToString().ToLowerInvariant())
    $W.WriteAttributeString('globbing', $f['Accept wildcard characters'].ToLowerInvariant())
    $W.WriteAttributeString('pipelineInput', $pipeline)
    $W.WriteAttributeString('position', $f['Position'].ToLowerInvariant())
    $W.WriteAttributeString('aliases', $(if ($f['Aliases']) { $f['Aliases'] } else { 'none' }))
    $W.WriteElementString('name', $ns.maml, $P.Name)
    Write-Description $W $P.Description
    if ($f['Accepted values']) {
        $W.WriteStartElement('parameterValueGroup', $ns.command)
        foreach ($value in $f['Accepted values'] -split ',\s*') {
            $W.WriteStartElement('parameterValue', $ns.command)
            $W.WriteAttributeString('required', 'false'); $W.WriteAttributeString('variableLength', 'false')
            $W.WriteString($value); $W.WriteEndElement()
        }
        $W.WriteEndElement()
    }
    if (-not $isSwitch) {
        $W.WriteStartElement('parameterValue', $ns.command)
        $W.WriteAttributeString('required', 'true'); $W.WriteAttributeString('variableLength', 'false')
        $W.WriteString($type); $W.WriteEndElement()
    }
    $W.WriteStartElement('type', $ns.dev); $W.WriteElementString('name', $ns.maml, $type); $W.WriteEndElement()
    $W.WriteElementString('defaultValue', $ns.dev, $(if ($f['Default value']) { $f['Default value'] } else { 'None' }))
    $W.WriteEndElement()
}

# Parameters of one set in syntax order: positional ones by position, then named ones as documented.
function Get-SetParameter($Help, [string] $Set) {
    $members = $Help.Parameters | Where-Object { ($_.Fields['Parameter Sets'] -split ',\s*') -contains $Set -or $_.Fields['Parameter Sets'] -eq '(All)' }
    $positional = @($members | Where-Object { $_.Fields['Position'] -match '^\d+$' } | Sort-Object { [int]$_.Fields['Position'] })
    $positional + @($members | Where-Object { $_.Fields['Position'] -notmatch '^\d+$' })
}

function Write-TypeList([System.Xml.XmlWriter] $W, [string] $Outer, [string] $Inner, $Types) {
    $W.WriteStartElement($Outer, $ns.command)
    foreach ($t in $Types) {
        $W.WriteStartElement($Inner, $ns.command)
        $W.WriteStartElement('type', $ns.dev); $W.WriteElementString('name', $ns.maml, $t.Title); $W.WriteEndElement()
        Write-Description $W (Get-Paragraph $t.Lines)
        $W.WriteEndElement()
    }
    $W.WriteEndElement()
}

function Write-Command([System.Xml.XmlWriter] $W, $Help) {
    $verb, $noun = $Help.Name -split '-', 2
    $W.WriteStartElement('command', 'command', $ns.command)
    $W.WriteAttributeString('xmlns', 'maml', $null, $ns.maml)
    $W.WriteAttributeString('xmlns', 'dev', $null, $ns.dev)
    $W.WriteStartElement('details', $ns.command)
    $W.WriteElementString('name', $ns.command, $Help.Name)
    $W.WriteElementString('verb', $ns.command, $verb)
    $W.WriteElementString('noun', $ns.command, $noun)
    Write-Description $W $Help.Synopsis
    $W.WriteEndElement()
    Write-Description $W $Help.Description

    $W.WriteStartElement('syntax', $ns.command)
    foreach ($set in $Help.Sets) {
        $W.WriteStartElement('syntaxItem', $ns.command)
        $W.WriteElementString('name', $ns.maml, $Help.Name)
        foreach ($p in Get-SetParameter $Help $set.Name) { Write-Parameter $W $p }
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    $W.WriteStartElement('parameters', $ns.command)
    $written = [System.Collections.Generic.HashSet[string]]::new()
    foreach ($p in $Help.Parameters | Where-Object { $written.Add($_.Name) }) { Write-Parameter $W $p }
    $W.WriteEndElement()

    Write-TypeList $W 'inputTypes' 'inputType' $Help.Inputs
    Write-TypeList $W 'returnValues' 'returnValue' $Help.Outputs
    $W.WriteStartElement('alertSet', $ns.maml)
    $W.WriteStartElement('alert', $ns.maml); Write-Para $W $Help.Notes; $W.WriteEndElement()
    $W.WriteEndElement()

    $W.WriteStartElement('examples', $ns.command)
    foreach ($e in $Help.Examples) {
        $W.WriteStartElement('example', $ns.command)
        $W.WriteElementString('title', $ns.maml, "-------------------------- $($e.Title) --------------------------")
        $W.WriteElementString('code', $ns.dev, $e.Code)
        # The trailing empty paragraph separates the example from the next one when Get-Help prints them.
        $W.WriteStartElement('remarks', $ns.dev); Write-Para $W (@($e.Remarks) + ''); $W.WriteEndElement()
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    $W.WriteStartElement('relatedLinks', $ns.command)
    foreach ($l in $Help.Links) {
        $W.WriteStartElement('navigationLink', $ns.maml)
        $W.WriteElementString('linkText', $ns.maml, $l.Text)
        $W.WriteElementString('uri', $ns.maml, $(if ($l.Uri -match '^https?://') { $l.Uri } else { '' }))
        $W.WriteEndElement()
    }
    $W.WriteEndElement()
    $W.WriteEndElement()
}

# about_*.md (PlatyPS about layout) to the indented plain text Get-Help shows.
function ConvertTo-AboutText([string] $File) {
    $out = [System.Text.StringBuilder]::new()
    $inFence = $false
    foreach ($line in Get-Content -LiteralPath $File) {
        if ($line.StartsWith('```')) { $inFence = -not $inFence; continue }
        if ($inFence) { $null = $out.AppendLine("        $line"); continue }
        if ($line -match '^# (.+)$') { $null = $out.AppendLine('TOPIC').AppendLine("    $($Matches[1])"); continue }
        if ($line -match '^#{2,} (.+)$') { $null = $out.AppendLine($Matches[1].ToUpperInvariant()); continue }
        $null = $out.AppendLine($(if ($line.Trim()) { "    $line" } else { '' }))
    }
    $out.ToString()
}

$settings = [System.Xml.XmlWriterSettings]@{ Indent = $true; Encoding = [System.Text.UTF8Encoding]::new($false) }
$null = New-Item -ItemType Directory -Force -Path (Split-Path -Parent $MamlPath), $AboutFolder
$writer = [System.Xml.XmlWriter]::Create($MamlPath, $settings)
try {
    $writer.WriteStartDocument()
    $writer.WriteStartElement('helpItems', 'http://msh')
    $writer.WriteAttributeString('schema', 'maml')
    foreach ($file in Get-ChildItem -LiteralPath $DocsPath -Filter '*.md' | Where-Object Name -NotLike 'about_*' | Sort-Object Name) {
        Write-Command $writer (Read-CommandHelp $file.FullName)
    }
    $writer.WriteEndElement()
    $writer.WriteEndDocument()
} finally {
    $writer.Dispose()
}
foreach ($file in Get-ChildItem -LiteralPath $DocsPath -Filter 'about_*.md') {
    $target = Join-Path $AboutFolder ($file.BaseName + '.help.txt')
    [System.IO.File]::WriteAllText($target, (ConvertTo-AboutText $file.FullName))
}
